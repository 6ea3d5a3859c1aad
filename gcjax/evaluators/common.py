"""What every evaluator shares: the run's names, the evaluation stream, and
the checks of ``pred`` / ``target``.

No files are written here; ``train.py`` writes what evaluators return.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import numpy as np

from gcjax import errors, sharding
from gcjax.data import pipeline

STATS_PREFIX = 'stats:'


class Names(NamedTuple):
  """What ``pred`` and ``target`` may name in a run."""
  predict: tuple[str, ...]
  batch: tuple[str, ...]


def as_tuple(v) -> tuple[str, ...]:
  if v is None or v == '':
    return ()
  return (v,) if isinstance(v, str) else tuple(v)


def check_pred(pred, names: Names) -> tuple[str, ...]:
  """``pred`` as a tuple of predict names (() = all); UserError otherwise."""
  pred = as_tuple(pred)
  bad = [p for p in pred if p not in names.predict]
  if bad:
    raise errors.UserError(f'pred {bad} are not predict functions of this '
                           f'method; it has {list(names.predict)}')
  return pred or names.predict


def check_target(target, names: Names, *, stats: bool = False
                 ) -> tuple[str, ...]:
  """``target`` as a tuple of batch keys / predict names (/ stats paths)."""
  target = as_tuple(target)
  for t in target:
    if stats and t.startswith(STATS_PREFIX):
      continue
    if t not in names.batch and t not in names.predict:
      raise errors.UserError(
          f'target {t!r} is neither a batch key {list(names.batch)} nor a '
          f'predict function {list(names.predict)}'
          + (" nor 'stats:<path>'" if stats else ''))
  return target


class Context:
  """What an evaluator may read: predictions streamed over the test split
  and the finished networks.

  Args:
    predict: name -> jitted ``fn(state, batch, frozen)``.
    state, frozen: the method's state and frozen inputs.
    arrays: the test split, name -> [N, ...] (``{'_row': arange(N)}`` for a
      data-free method).
    mesh: the device mesh.
    batch_size: global evaluation batch size.
    eval_inputs: the method's ``eval_inputs(batch, key)``.
    finalize: the method's ``finalize(state, frozen)``.
  """

  def __init__(self, *, predict, state, frozen, arrays, mesh,
               batch_size: int, eval_inputs: Callable, finalize: Callable):
    self.predict = predict
    self.state = state
    self.frozen = frozen
    self.arrays = arrays
    self.mesh = mesh
    self.batch_size = batch_size
    self.eval_inputs = eval_inputs
    self._finalize = finalize
    self._networks = None

  def stream(self, preds: Sequence[str], limit: int = 0, seed: int = 1000
             ) -> Iterator[tuple[dict[str, np.ndarray],
                                 dict[str, np.ndarray]]]:
    """Yields ``(batch, predictions)`` numpy dicts, valid rows only.

    ``limit`` > 0 keeps the first rows of the split; batch ``i`` gets its
    evaluation inputs from ``fold_in(key(seed), i)``.
    """
    n = len(next(iter(self.arrays.values())))
    if limit and limit > 0:
      n = min(n, limit)
    arrays = {k: v[:n] for k, v in self.arrays.items()}
    for i, (batch, mask) in enumerate(
        pipeline.eval_batches(arrays, self.batch_size)):
      valid = int(mask.sum())
      key = jax.random.fold_in(jax.random.key(seed), i)
      batch = {k: np.asarray(v)
               for k, v in self.eval_inputs(batch, key).items()}
      gb = sharding.global_from_host(batch, self.mesh)
      out = {k: np.asarray(jax.device_get(
          self.predict[k](self.state, gb, self.frozen)))[:valid]
             for k in dict.fromkeys(preds)}
      yield {k: v[:valid] for k, v in batch.items()}, out

  def networks(self) -> dict[str, Any]:
    """``Method.finalize``'s networks, variables on the host (cached)."""
    if self._networks is None:
      nets = self._finalize(self.state, self.frozen)
      self._networks = {k: v._replace(variables=jax.device_get(v.variables))
                        for k, v in nets.items()}
    return self._networks


def paired(preds: Sequence[str], targets: Sequence[str], names: Names):
  """``(pred, target, prefix)`` pairs: '' against data, 'agree_' against
  another predict; a predict is never compared with itself."""
  out = []
  for p in preds:
    for t in targets:
      if t == p:
        continue
      out.append((p, t, '' if t in names.batch else 'agree_'))
  return out


def needed(preds, targets, names: Names) -> tuple[str, ...]:
  """Predict names the stream must run: the scored ones and predict
  targets."""
  return tuple(dict.fromkeys(
      [*preds, *(t for t in targets if t in names.predict)]))


class Sums:
  """Per-model running sums of per-row metric values, averaged by rows."""

  def __init__(self):
    self.sums: dict[str, dict[str, float]] = {}
    self.count = 0

  def add(self, model: str, metric: str, per_row: Any) -> None:
    s = self.sums.setdefault(model, {})
    s[metric] = s.get(metric, 0.0) + float(np.sum(per_row))

  def means(self) -> dict[str, dict[str, float]]:
    return {m: {k: v / self.count for k, v in s.items()}
            for m, s in self.sums.items()}


def check_batch_keys(names: Names, **keys: str) -> None:
  """Each ``keys`` value must be a batch key; the error names the field."""
  for key, value in keys.items():
    if value not in names.batch:
      raise errors.UserError(f'{key} {value!r} is not a batch key; the '
                             f'batch has {list(names.batch)}')


class Labelled(NamedTuple):
  """One pass over the split for class-conditional scores: real rows and
  their classes, and per predict name its rows and the classes they were
  generated for."""
  real: np.ndarray
  real_label: np.ndarray
  fake: dict[str, tuple[np.ndarray, np.ndarray]]


def labelled_rows(ctx: Context, preds: Sequence[str], limit: int, seed: int,
                  *, target: str, label: str, pred_label: str,
                  transform: Callable = np.asarray) -> Labelled:
  """Streams the split once; ``transform`` maps each batch of images (real
  first, then each prediction) before it is kept (e.g. to features)."""
  real, real_y = [], []
  fake = {name: ([], []) for name in preds}
  for batch, out in ctx.stream(preds, limit, seed):
    real.append(transform(batch[target]))
    real_y.append(np.asarray(batch[label]))
    for name in preds:
      fake[name][0].append(transform(out[name]))
      fake[name][1].append(np.asarray(batch[pred_label]))
  return Labelled(
      np.concatenate(real), np.concatenate(real_y),
      {name: (np.concatenate(f), np.concatenate(y))
       for name, (f, y) in fake.items()})

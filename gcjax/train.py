"""The one orchestrator: mesh, state, jit, loop, logging, evals, checkpoints.

This is the only module that does I/O and reads wall clocks. Methods plug in
through ``gcjax.methods.<name>.make(config, sample_batch) -> Method``,
evaluators through ``gcjax.evaluators.<type>``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from gcjax import chain, errors, precision, sharding
from gcjax import checkpoint as ckpt_lib
from gcjax import data as data_lib
from gcjax import evaluators as eval_lib
from gcjax import export as export_lib
from gcjax import methods as methods_lib
from gcjax.data import pipeline, sources, streaming
from gcjax.evaluators import report


class TrainingDiverged(RuntimeError):
  """A loss or gradient became non-finite and the guard policy is 'stop'."""


def _guarded(train_step, policy: str):
  """Wraps a method's step with the non-finite guard (inside the jit).

  Under ``policy='skip'`` a step whose metrics are not all finite keeps the
  old state (only ``step`` advances, so the PRNG and data streams move on)
  and reports ``guard/skipped = 1``. Under ``'stop'`` the host stops the run.
  """
  if policy not in ('stop', 'skip'):
    raise ValueError(f"guard.policy must be 'stop' or 'skip', got {policy!r}")

  def step(state, batch, key, frozen):
    new, metrics = train_step(state, batch, key, frozen)
    finite = jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
    if policy == 'skip':
      new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
      new = new.replace(step=state.step + 1)
    metrics = dict(metrics)
    metrics['guard/skipped'] = 1.0 - finite.astype(jnp.float32)
    return new, metrics
  return step


def _first_nonfinite(history: list[dict[str, np.ndarray]], start: int):
  """(step, name) of the first non-finite metric.

  Within a step the sub-losses are named first (where a NaN arises inside
  one term, that term), then totals (``*loss``), then gradient norms, which
  a non-finite term poisons too.
  """
  for i, m in enumerate(history):
    bad = [k for k, v in m.items()
           if k != 'guard/skipped' and not np.all(np.isfinite(v))]
    if bad:
      bad.sort(key=lambda k: (k.endswith('grad_norm'), k.endswith('loss'), k))
      return start + i, bad[0]
  return None


def _nan_at_step(config) -> int:
  """``config.debug.nan_at_step`` (tests of the guard), -1 when unset/0.

  At that (0-based) step the float inputs of the batch are multiplied by
  NaN, as a stand-in for a blow-up; 0 or a missing ``debug`` section is off.
  """
  debug = config.get('debug')
  step = int(debug.get('nan_at_step', 0)) if debug is not None else 0
  return step if step > 0 else -1


def default_workdir(config_path: str) -> str:
  name = os.path.splitext(os.path.basename(config_path.split(':')[0]))[0]
  return os.path.join('runs', name, time.strftime('%Y%m%d-%H%M%S'))


def _to_uint8(x: np.ndarray) -> np.ndarray:
  x = np.clip((np.asarray(x, np.float32) + 1.0) * 127.5, 0, 255)
  x = np.round(x).astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return x


def sample_grid(rows: dict[str, np.ndarray], order,
                min_cell: int = 128) -> np.ndarray:
  """One row per example, one column per entry of ``order``: [H', W', 3].

  Cells are enlarged by an integer factor (nearest neighbour) to at least
  ``min_cell`` pixels, so 32x32 samples are not thumbnails.
  """
  cols = [_to_uint8(rows[name]) for name in order]
  n, h, w = cols[0].shape[:3]
  scale = max(1, -(-min_cell // min(h, w)))
  if scale > 1:
    cols = [np.repeat(np.repeat(c, scale, 1), scale, 2) for c in cols]
    h, w = h * scale, w * scale
  pad = 2
  grid = np.full((n * (h + pad) + pad, len(cols) * (w + pad) + pad, 3), 255,
                 np.uint8)
  for j, col in enumerate(cols):
    if col.shape[1:3] != (h, w):
      col = np.asarray(jax.image.resize(col, (n, h, w, 3), 'nearest'))
    for i in range(n):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = col[i]
  return grid


class _Writer:
  """TensorBoard scalars/images + PNG samples; a no-op off process 0."""

  def __init__(self, workdir: str, active: bool):
    self.active = active
    self.workdir = workdir
    self._tb = None
    if active:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(logdir=workdir, flush_secs=30)

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if self._tb:
      for k, v in values.items():
        self._tb.add_scalar(k, float(v), step)

  def image(self, step: int, name: str, img: np.ndarray) -> None:
    if not self.active:
      return
    from PIL import Image
    self._tb.add_image(name, img, step, dataformats='HWC')
    os.makedirs(os.path.join(self.workdir, 'samples'), exist_ok=True)
    Image.fromarray(img).save(
        os.path.join(self.workdir, 'samples', f'{name}_{step:07d}.png'))

  def close(self) -> None:
    if self._tb:
      self._tb.close()


def _load_split(config, split: str, limit: int) -> dict[str, np.ndarray]:
  """Loads a split; ``limit`` > 0 keeps its first ``limit`` examples."""
  d = config.data
  arrays = data_lib.load(d.name, split, **d.args.to_dict())
  if limit > 0:
    arrays = {k: v[:limit] for k, v in arrays.items()}
  return arrays


def _load_data(config, mesh):
  """(batcher or None, test arrays, global sample batch or None).

  The batcher is a `pipeline.Batcher` over the decoded train split, or a
  `streaming.Streamer` when `streaming.enabled(config.data)` says so. The
  test split is always read into memory (evaluations read it whole).
  ``config.data.name == ''`` loads nothing (data-free methods): the test
  "split" is a row counter of ``data.test_limit`` rows that the method's
  ``eval_inputs`` turns into inputs.
  """
  d = config.data
  if not d.name:
    if d.test_limit <= 0:
      raise errors.UserError('config.data.name is empty (no dataset): set '
                             'config.data.test_limit to the number of '
                             'evaluation rows')
    return None, {'_row': np.arange(d.test_limit, dtype=np.int32)}, None
  if streaming.enabled(d):
    batcher = streaming.Streamer(
        sources.streams(d.name, d.train_split, d.args.to_dict(),
                        d.train_limit),
        d.batch_size, seed=d.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), flip=d.flip, jitter=d.jitter,
        workers=int(d.get('workers', 0)),
        on_bad=d.get('on_bad_example', 'error'))
    sample = batcher.sample_batch()
  else:
    batcher = pipeline.Batcher(
        _load_split(config, d.train_split, d.train_limit), d.batch_size,
        seed=d.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), flip=d.flip, jitter=d.jitter)
    sample = batcher.batch(0)
  test_arrays = _load_split(config, d.test_split, d.test_limit)
  return batcher, test_arrays, pipeline.to_global(sample, mesh)


def _batches(batcher, start: int, wait: dict[str, float]):
  """(step, host batch) from ``start`` on; empty batches without data.

  ``wait['s']`` accumulates the seconds spent waiting for each batch (the
  host-side input wait; the loop resets it after the first step).
  """
  if batcher is None:
    step = start
    while True:
      yield step, {}
      step += 1
  source = batcher.iterate(start)
  try:
    while True:
      t = time.perf_counter()
      item = next(source)
      wait['s'] += time.perf_counter() - t
      yield item
  finally:
    source.close()


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, evaluates and exports according to ``config``; returns results.

  Resumes from the latest checkpoint in ``workdir/checkpoints`` if present.
  A config that names how to train its missing teacher (``teacher.train``,
  ``gcjax.chain``) first trains it in ``workdir/teacher`` (or reuses it).
  """
  config = chain.teacher_first(config, workdir, run)
  jax.config.update('jax_threefry_partitionable',
                    bool(config.threefry_partitionable))
  if config.compute_dtype not in precision.DTYPES:
    raise errors.UserError(f'config.compute_dtype: expected one of '
                           f'{precision.DTYPES}, got {config.compute_dtype!r}')
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)

  mesh = sharding.create_mesh()
  sharding.check_global_batch(config.data.batch_size, mesh)

  batcher, test_arrays, sample_batch = _load_data(config, mesh)
  method = methods_lib.get(config.method).make(config, sample_batch)
  if method.needs_data and batcher is None:
    raise errors.UserError(f'method {config.method!r} with this config '
                           'trains on data: set config.data.name')
  row = {k: v[:1] for k, v in test_arrays.items()}
  names = eval_lib.Names(
      predict=tuple(method.predict),
      batch=tuple(method.eval_inputs(row, jax.random.key(0))))
  evaluators = eval_lib.build(_with_fid_stats(config, names.batch), names)

  root = jax.random.key(config.seed)
  init_key, loop_key = jax.random.split(root)
  abstract = jax.eval_shape(method.init, init_key)
  state_sh = sharding.replicate_tree(abstract, mesh)
  rep = sharding.replicated(mesh)

  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                               max_to_keep=config.keep_ckpts)
  meta = {'skipped': 0}
  t_restart = time.perf_counter()
  stream = batcher if isinstance(batcher, streaming.Streamer) else None
  found = ckpt.restore_latest(abstract, state_sh, data=stream)
  if found is not None:
    state, meta = found.state, found.meta
    if is_main:
      for step, reason, moved in found.set_aside:
        print(f'gcjax: checkpoint {ckpt.directory}/{step} is damaged '
              f'({reason}); moved to {moved}', file=sys.stderr)
      print(f'gcjax: resumed from {ckpt.directory} at step {found.step}'
            f'{"" if found.verified else " (no digest record to verify)"}',
            file=sys.stderr)
  else:
    state = jax.jit(method.init, out_shardings=state_sh)(init_key)
  start = int(jax.device_get(state.step))
  frozen = jax.device_put(method.frozen, rep)
  # Written only once data, method and checkpoint have been accepted, so a
  # run refused on bad input leaves an existing workdir as it was.
  if is_main:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
  nan_at = _nan_at_step(config)

  step = precision.traced_in(_guarded(method.train_step, config.guard.policy),
                              config.compute_dtype)
  step_fn = jax.jit(step, donate_argnums=(0,), out_shardings=(state_sh, rep))
  predict = {k: jax.jit(fn, out_shardings=rep)
             for k, fn in method.predict.items()}

  def context(state) -> eval_lib.Context:
    return eval_lib.Context(
        predict=predict, state=state, frozen=frozen, arrays=test_arrays,
        mesh=mesh, batch_size=config.eval_batch_size,
        eval_inputs=method.eval_inputs, finalize=method.finalize)

  if any(ev.kind == 'fid' and ev.every_steps for ev in evaluators):
    _cache_fid_stats(evaluators, config, test_arrays, is_main)
  writer = _Writer(workdir, is_main)
  # A fixed test batch for sample grids (same every time and on resume).
  n_show = min(config.n_samples, len(next(iter(test_arrays.values()))))
  show = {k: v[:n_show] for k, v in test_arrays.items()}
  show = {k: pipeline.to_float(v) for k, v in show.items()}

  def write_samples(step: int, state) -> None:
    rows = dict(show)
    n_dev = mesh.devices.size
    pad = -n_show % n_dev
    b = {k: np.concatenate([v, np.repeat(v[:1], pad, 0)]) for k, v in
         show.items()}
    # Fixed evaluation inputs (e.g. latents): the grid tracks one per row.
    b = {k: np.asarray(v) for k, v in
         method.eval_inputs(b, jax.random.key(config.seed)).items()}
    gb = sharding.global_from_host(b, mesh)
    for name in method.sample_rows:
      if name in predict:
        rows[name] = np.asarray(jax.device_get(
            predict[name](state, gb, frozen)))[
            :n_show]
    writer.image(step, 'samples', sample_grid(rows, method.sample_rows))

  total = config.total_steps
  bar = tqdm.tqdm(total=total, initial=start, disable=not is_main,
                  dynamic_ncols=True, desc=config.method, mininterval=1.0)
  pending: list[tuple[int, dict]] = []
  first_step_s = None
  # Input wait after the first step (compiles excluded): README "Streaming
  # input"; experiments/bench_input.py reports it.
  wait, loop_t0, loop_s = {'s': 0.0}, None, 0.0
  last_log = {}

  def flush(step: int) -> None:
    nonlocal last_log
    if not pending:
      return
    hist = jax.device_get([m for _, m in pending])
    bad = _first_nonfinite(hist, pending[0][0])
    skipped = int(sum(float(m['guard/skipped']) for m in hist))
    meta['skipped'] = int(meta.get('skipped', 0)) + skipped
    pending.clear()
    if bad is not None and config.guard.policy == 'stop':
      raise TrainingDiverged(
          f'Non-finite value of {bad[1]!r} at step {bad[0]}; stopping. The '
          f'last good checkpoint in {ckpt.directory} is kept (step '
          f'{ckpt.latest_step()}). Lower the learning rate, set '
          'guard.policy=skip, or clip Langevin gradients.')
    mean = {k: float(np.mean([m[k] for m in hist])) for k in hist[-1]}
    mean['guard/skipped_total'] = meta['skipped']
    if stream is not None:
      mean['data/bad_examples_skipped'] = stream.skipped
    last_log = mean
    writer.scalars(step, mean)
    # The bar shows the losses first (then energies etc.), at most six.
    shown = sorted((k for k in mean if not k.startswith('guard')),
                   key=lambda k: (not k.endswith('loss'), k))[:6]
    bar.set_postfix({k: f'{mean[k]:.3g}' for k in shown}, refresh=False)

  try:
    for step, host_batch in _batches(batcher, start, wait):
      if step >= total:
        break
      if step == nan_at:
        host_batch = {k: v * np.float32(np.nan) if v.dtype.kind == 'f' else v
                      for k, v in host_batch.items()}
      batch = pipeline.to_global(host_batch, mesh)
      state, metrics = step_fn(state, batch, loop_key, frozen)
      if first_step_s is None:
        jax.block_until_ready(state.step)
        first_step_s = time.perf_counter() - t_restart
        wait['s'], loop_t0 = 0.0, time.perf_counter()
        writer.scalars(step + 1, {'time/first_step_s': first_step_s})
      pending.append((step, metrics))
      done = step + 1
      bar.update(1)
      is_last = done == total
      if done % config.log_every == 0 or is_last:
        flush(done)
      stop_now = bool(config.run_steps) and done - start >= config.run_steps
      if done % config.ckpt_every == 0 or is_last or stop_now:
        flush(done)
        ckpt.save(done, state, meta, data=stream)
      if stop_now and not is_last:
        if is_main:
          print(f'gcjax: run_steps={config.run_steps} reached at step '
                f'{done}; rerun the same command to continue.',
                file=sys.stderr)
        writer.close()
        return {'_run': {'stopped_at': done}}
      if config.sample_every and (done % config.sample_every == 0):
        write_samples(done, state)
      due = [ev for ev in evaluators if ev.every_steps and
             done % ev.every_steps == 0 and not is_last]
      if due:
        writer.scalars(done, report.flatten(
            eval_lib.evaluate(due, context(state))))
    if loop_t0 is not None:
      loop_s = time.perf_counter() - loop_t0
  finally:
    bar.close()
    ckpt.close()

  write_samples(total, state)
  _cache_fid_stats(evaluators, config, test_arrays, is_main)
  ctx = context(state)
  results = eval_lib.evaluate(evaluators, ctx)
  results['_run'] = {
      'steps': total, 'resumed_from': start,
      'first_step_s_after_start': first_step_s,
      'skipped_steps': int(meta.get('skipped', 0)),
      'devices': jax.device_count(), 'platform': jax.default_backend(),
      'last_losses': last_log}
  results['_run']['time/input_wait_s'] = wait['s']
  results['_run']['time/loop_s'] = loop_s
  results['_run']['time/input_wait_fraction'] = wait['s'] / max(loop_s, 1e-9)
  if stream is not None:
    results['_run'].update(streaming=True,
                           bad_examples_skipped=stream.skipped)
  if is_main:
    writer.scalars(total, report.flatten(results))
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f, indent=2, default=float)
    with open(os.path.join(workdir, 'results.md'), 'w') as f:
      f.write(report.to_markdown(results, title=_title(config)))
    export_lib.export(os.path.join(workdir, 'export'), ctx.networks(),
                      method.export, config)
  writer.close()
  return results


def _with_fid_stats(config, batch_keys) -> dict:
  """The evaluator sections, FID-vs-data ones pointed at cached statistics.

  The statistics of the test images are computed once per data config and
  kept in the gcjax cache (``python -m gcjax.stats`` makes the same file),
  so later runs skip the real images' Inception pass.
  """
  from gcjax import stats as stats_lib
  evals = {k: dict(v) for k, v in config.evals.items()}
  for ev in evals.values():
    target = ev.get('target')
    if (ev.get('type') != 'fid' or ev.get('stats_path')
        or not isinstance(target, str) or target not in batch_keys
        or not config.data.name):
      continue
    ev['stats_path'] = stats_lib.default_path(
        config.data, config.data.test_split, target, int(ev.get('limit', 0)))
  return evals


def _cache_fid_stats(evaluators, config, test_arrays, is_main: bool) -> None:
  """Writes the real-image statistics the FID evaluators read, if missing."""
  for ev in evaluators:
    fid_ev = ev.evaluator
    if ev.kind != 'fid' or fid_ev.target not in test_arrays:
      continue
    path = fid_ev.stats_path
    from gcjax import stats as stats_lib
    problem = stats_lib.cache_problem(path) if is_main else None
    if problem is not None:
      if problem != stats_lib.MISSING:
        print(f'gcjax: cached FID statistics {path} cannot be used ({problem}); '
              'recomputing them', file=sys.stderr)
      print(f'gcjax: computing real-image FID statistics -> {path}',
            file=sys.stderr)
      from gcjax.metrics import fid
      images = test_arrays[fid_ev.target]
      s = stats_lib.compute(
          images[:fid_ev.limit] if fid_ev.limit > 0 else images,
          fid_ev.batch_size)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      fid.save_stats(path, s)
    if jax.process_count() > 1:
      # Every process must run the same evaluation program.
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices('gcjax_fid_stats')
      if not os.path.exists(path):
        fid_ev.stats_path = ''   # not a shared file system: on the fly


def _title(config) -> str:
  return f'gcjax results: method={config.method}, data={config.data.name}'

"""Evaluator plug-ins: one module per type, ``gcjax.evaluators.<type>``.

A config names its evaluators as ``config.evals.<name> = dict(type=...,
every_steps=..., repeats=..., pred=..., target=..., <type's own keys>)``:

* ``pred``: the predict functions it scores (``()``: all of them; for
  ``cost``, the finished networks of ``Method.finalize``);
* ``target``: what they are compared against: a batch key (``'tgt'``: the
  data), another predict (``'teacher'``: agreement), or saved statistics
  (``'stats:<path>'``, FID only); a tuple where a type takes several;
* ``every_steps``: 0 = only after training; ``repeats`` > 1 reports the mean
  and ``_std`` over draws of the evaluation inputs (seeds 1000, 1001, ...).

The contract (``common.Evaluator``): a module defines ``Evaluator(names,
**keys)`` that checks its keys against ``names`` (the predict and batch
names of the run) at start-up, and ``run(ctx, seed) -> {model: {metric:
value}}``. A new type is a new module here; nothing else changes.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import numpy as np

from gcjax import errors
from gcjax.evaluators.common import Context, Names  # noqa: F401

_NOT_TYPES = ('common', 'report')


def available() -> tuple[str, ...]:
  """The evaluator types (module names of this package)."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                      if m.name not in _NOT_TYPES))


def get(kind: str):
  """The module of evaluator type ``kind``; UserError naming the known ones."""
  if kind not in available():
    raise errors.UserError(f'evaluator type {kind!r} does not exist; known: '
                           f'{", ".join(available())}')
  return importlib.import_module(f'{__name__}.{kind}')


class Configured:
  """One configured evaluator: its plug-in object and schedule."""

  def __init__(self, name: str, section: dict[str, Any], names: Names):
    section = dict(section)
    where = f'config.evals.{name}'
    if 'type' not in section:
      raise errors.UserError(f'{where}: no type; known: '
                             f'{", ".join(available())}')
    self.name = name
    self.kind = section.pop('type')
    self.every_steps = int(section.pop('every_steps', 0))
    self.repeats = int(section.pop('repeats', 1))
    try:
      cls = get(self.kind).Evaluator
    except errors.UserError as e:
      raise errors.UserError(f'{where}: {e}') from None
    allowed = set(inspect.signature(cls).parameters) - {'names'}
    unknown = sorted(set(section) - allowed)
    if unknown:
      raise errors.UserError(f'{where}: unknown keys {unknown} for type '
                             f'{self.kind!r}; allowed: {sorted(allowed)}')
    try:
      self.evaluator = cls(names, **section)
    except errors.UserError as e:
      raise errors.UserError(f'{where}: {e}') from None

  def run(self, ctx: Context) -> dict[str, dict[str, float]]:
    runs = [self.evaluator.run(ctx, seed=1000 + r)
            for r in range(self.repeats)]
    return _mean_std(runs) if self.repeats > 1 else runs[0]


def build(evals, names: Names) -> list[Configured]:
  """Checks every configured evaluator (at start-up, before training)."""
  return [Configured(name, ev, names) for name, ev in evals.items()]


def evaluate(configured, ctx: Context) -> dict[str, dict[str, Any]]:
  """Runs the evaluators; merges their per-model results."""
  results: dict[str, dict[str, Any]] = {}
  for ev in configured:
    for model, vals in ev.run(ctx).items():
      results.setdefault(model, {}).update(vals)
  return results


def _mean_std(runs):
  out = {}
  for model in runs[0]:
    out[model] = {}
    for k in runs[0][model]:
      vals = np.array([r[model][k] for r in runs])
      out[model][k] = float(vals.mean())
      out[model][k + '_std'] = float(vals.std(ddof=1))
  return out

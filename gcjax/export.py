"""Serialize generators for deployment: flat ``.npz`` weights + a JSON card."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from flax import traverse_util

from gcjax import npz


def save_variables(path: str, variables) -> None:
  """Writes a variable tree as a flat npz (keys joined by '/'), atomically."""
  flat = traverse_util.flatten_dict(jax.device_get(variables), sep='/')
  npz.save_atomic(path, {k: np.asarray(v) for k, v in flat.items()})


def load_variables(path: str):
  """Inverse of :func:`save_variables`."""
  with np.load(path) as f:
    flat = {k: f[k] for k in f.files}
  return traverse_util.unflatten_dict(flat, sep='/')


def export(directory: str, method, state, frozen, config) -> list[str]:
  """Saves every cost-model network of ``method`` (e.g. the student).

  Networks whose variables are all frozen inputs (a pretrained teacher) are
  not written again. Returns the written file names. Each network gets
  ``<name>.npz`` and the
  run's config goes next to them, so the generator can be rebuilt from the
  config's model section and loaded with :func:`load_variables`.
  """
  os.makedirs(directory, exist_ok=True)
  written = []
  frozen_ids = {id(x) for x in jax.tree.leaves(frozen)}
  for name, cm in method.cost_models.items():
    variables = cm.variables(state, frozen)
    if frozen_ids and all(id(x) in frozen_ids
                          for x in jax.tree.leaves(variables)):
      continue   # a pretrained input (e.g. the teacher), not a result
    path = os.path.join(directory, f'{name}.npz')
    save_variables(path, variables)
    written.append(path)
  card = {'networks': [os.path.basename(p)[:-len('.npz')] for p in written],
          'input_shape': {k: list(v.input_shape)
                          for k, v in method.cost_models.items()}}
  with open(os.path.join(directory, 'card.json'), 'w') as f:
    json.dump(card, f, indent=2)
  with open(os.path.join(directory, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  return written

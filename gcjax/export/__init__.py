"""Write finished networks so another run (or a deployment) can rebuild them.

``export(directory, networks, names, config)`` writes, per network,
``<name>.npz`` (the variables, flat keys joined by '/') and one
``card.json`` that says how to rebuild each module: its class (always from
``gcjax.models``), the module's fields, its input shape and the config
section it was built from; plus the run's ``config.json``.
``gcjax.teachers`` reads these back (``run:<workdir>[:<net>]`` specs).
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from flax import traverse_util

from gcjax import npz
from gcjax.teachers import CARD, module_spec


def save_variables(path: str, variables) -> None:
  """Writes a variable tree as a flat npz (keys joined by '/'), atomically."""
  flat = traverse_util.flatten_dict(jax.device_get(variables), sep='/')
  npz.save_atomic(path, {k: np.asarray(v) for k, v in flat.items()})


def export(directory: str, networks: dict, names, config) -> list[str]:
  """Writes the networks ``names`` of ``networks`` (name -> base.Network).

  Returns the written ``.npz`` paths. The card lists every exported
  network with its class, fields, input shape and config section.
  """
  os.makedirs(directory, exist_ok=True)
  written, card = [], {'networks': {}}
  for name in names:
    net = networks[name]
    path = os.path.join(directory, f'{name}.npz')
    save_variables(path, net.variables)
    written.append(path)
    card['networks'][name] = {
        **module_spec(net.module), 'input_shape': list(net.input_shape),
        'input_dtype': np.dtype(net.input_dtype).name,
        'section': net.section, 'file': f'{name}.npz'}
  with open(os.path.join(directory, CARD), 'w') as f:
    json.dump(card, f, indent=2)
  with open(os.path.join(directory, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  return written

"""Networks from elsewhere: ``(module, variables)`` from a spec string.

Specs (``config.teacher.init``, ``config.student.init``, ...):

* ``''``: nothing to load (the caller initializes the network randomly);
* ``run:<workdir>[:<net>]``: a network exported by a finished gcjax run
  (``<workdir>/export/<net>.npz`` + ``card.json``; ``<workdir>`` may also be
  the export folder itself). ``<net>`` may be left out when the run exported
  one network, or a ``student`` / ``generator``;
* ``pretrained:vintagify`` (the CycleGAN ResNet-9 photo -> vintage
  generator) and ``pretrained:face_dcgan`` (the 64x64 DCGAN face generator),
  read from their pip packages through the verified asset loader.

Every way a spec can be wrong (missing run or network, unknown pretrained
name, an architecture that does not match the config) is a
``errors.UserError`` that names the spec.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gcjax import errors

CARD = 'card.json'
MODULE_PREFIX = 'gcjax.models.'
PRETRAINED = ('vintagify', 'face_dcgan')
DEFAULT_NETS = ('student', 'generator')


def _jsonable(v):
  if isinstance(v, (tuple, list)):
    return [_jsonable(x) for x in v]
  if isinstance(v, (bool, int, float, str)) or v is None:
    return v
  raise TypeError(f'module field value {v!r} is not JSON-serializable')


def _tuples(v):
  return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def module_spec(module) -> dict:
  """``{'class': 'gcjax.models.x.Cls', 'fields': {...}}`` of a linen module."""
  cls = type(module)
  name = f'{cls.__module__}.{cls.__qualname__}'
  if not name.startswith(MODULE_PREFIX):
    raise TypeError(f'can only export gcjax.models modules, got {name}')
  fields = {f.name: _jsonable(getattr(module, f.name))
            for f in dataclasses.fields(module)
            if f.init and f.name not in ('parent', 'name')}
  return {'class': name, 'fields': fields}


def module_from_spec(spec: dict, where: str):
  """Rebuilds a module from :func:`module_spec`'s dict.

  Only classes of ``gcjax.models`` are built; ``where`` names the source in
  errors.
  """
  name = spec.get('class', '')
  if not name.startswith(MODULE_PREFIX):
    raise errors.UserError(f'{where}: class {name!r} is not a gcjax.models '
                           'network')
  mod_name, _, cls_name = name.rpartition('.')
  try:
    cls = getattr(importlib.import_module(mod_name), cls_name)
  except (ImportError, AttributeError) as e:
    raise errors.UserError(f'{where}: no network class {name!r} in this '
                           f'gcjax version ({e})') from e
  fields = {k: _tuples(v) for k, v in spec.get('fields', {}).items()}
  try:
    return cls(**fields)
  except TypeError as e:
    raise errors.UserError(f'{where}: cannot build {name} from {fields}: '
                           f'{e}') from e


def load_variables(path: str):
  """A variable tree from a flat ``.npz`` written by ``export``."""
  with np.load(path) as f:
    flat = {k: f[k] for k in f.files}
  return traverse_util.unflatten_dict(flat, sep='/')


def _export_dir(path: str, spec: str) -> str:
  for d in (os.path.join(path, 'export'), path):
    if os.path.isfile(os.path.join(d, CARD)):
      return d
  if not os.path.isdir(path):
    raise errors.UserError(f'{spec}: no run folder {path!r}')
  raise errors.UserError(
      f'{spec}: {path!r} has no export/{CARD}; the run has not finished '
      '(rerun its command to complete it) or was made by an older gcjax')


def find_run_network(rest: str, spec: str) -> tuple[str, str, dict]:
  """``(export dir, net name, card entry)`` for ``run:<rest>``.

  ``rest`` is ``<workdir>[:<net>]``; ``spec`` names the source in errors.
  """
  path, net = rest, ''
  if ':' in rest and not os.path.exists(rest):
    path, _, net = rest.rpartition(':')
  d = _export_dir(path, spec)
  with open(os.path.join(d, CARD)) as f:
    card = json.load(f)['networks']
  if not net:
    if len(card) == 1:
      net = next(iter(card))
    else:
      net = next((n for n in DEFAULT_NETS if n in card), '')
    if not net:
      raise errors.UserError(f'{spec}: the run exported {sorted(card)}; name '
                             f'one as run:{path}:<net>')
  if net not in card:
    raise errors.UserError(f'{spec}: the run exported no network {net!r}; '
                           f'it has {sorted(card)}')
  return d, net, card[net]


def _load_run(rest: str, spec: str):
  d, _, entry = find_run_network(rest, spec)
  module = module_from_spec(entry, spec)
  variables = load_variables(os.path.join(d, entry['file']))
  return module, jax.tree.map(jnp.asarray, variables)


def _load_pretrained(name: str, spec: str):
  from gcjax import convert
  if name == 'vintagify':
    return convert.load_vintagify()
  if name == 'face_dcgan':
    return convert.load_face_dcgan()
  raise errors.UserError(f'{spec}: unknown pretrained network {name!r}; '
                         f'known: {", ".join(PRETRAINED)}')


def load(spec: str) -> tuple[Any, Any] | None:
  """``(module, variables)`` named by ``spec``; None for ``''``."""
  if not spec:
    return None
  kind, _, rest = spec.partition(':')
  if kind == 'run' and rest:
    return _load_run(rest, spec)
  if kind == 'pretrained' and rest:
    return _load_pretrained(rest, spec)
  raise errors.UserError(
      f'network spec {spec!r}: expected run:<workdir>[:<net>], '
      f'pretrained:<{"|".join(PRETRAINED)}> or empty')


def _shapes(tree):
  return jax.tree.map(lambda x: tuple(x.shape), tree)


def load_like(spec: str, module, sample, key: str):
  """Variables for ``module`` from ``spec`` (a warm start), or None.

  The loaded network must have ``module``'s class and fields and its
  variables ``module.init``'s shapes on ``sample``; ``key`` is the config
  key that holds the spec (for errors).
  """
  loaded = load(spec)
  if loaded is None:
    return None
  got, variables = loaded
  want_spec, got_spec = module_spec(module), module_spec(got)
  if want_spec != got_spec:
    raise errors.UserError(
        f'config.{key}={spec!r}: that network is {got_spec["class"]} '
        f'{got_spec["fields"]}, but the config builds {want_spec["class"]} '
        f'{want_spec["fields"]}')
  want = jax.eval_shape(lambda: module.init(
      {'params': jax.random.key(0), 'dropout': jax.random.key(0)}, sample))
  want = {k: v for k, v in want.items() if k in ('params', 'batch_stats')}
  if _shapes(want) != _shapes(variables):
    raise errors.UserError(f'config.{key}={spec!r}: its variables do not '
                           f'have the shapes {type(module).__name__} needs')
  return variables

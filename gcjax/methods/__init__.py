"""Method plug-ins: ``get(name)`` imports ``gcjax.methods.<name>``.

Each plug-in exposes ``make(config, sample_batch) -> base.Method``. A method
with several recipes (``gan``: pix2pix | dcgan | cyclegan; ``omgd``:
pix2pix | cyclegan) is a package whose ``make`` calls :func:`dispatch`.
Shared building blocks live in ``gcjax.recipes``, not here.
"""

import importlib
import pkgutil

from gcjax import errors


def available() -> tuple[str, ...]:
  """The method plug-ins that exist (module or package names)."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                      if m.name != 'base'))


def get(name: str):
  """The method module: ``gcjax.methods.<name>``, or any importable module
  when ``name`` is a dotted path (a plug-in kept outside gcjax, e.g.
  ``my_project.my_method``). It must have ``make``."""
  if '.' in name:
    try:
      module = importlib.import_module(name)
    except ModuleNotFoundError as e:
      raise errors.UserError(f'config.method={name!r}: no module {e.name!r} '
                             'on the Python path') from None
  elif name in available():
    module = importlib.import_module(f'gcjax.methods.{name}')
  else:
    raise errors.UserError(f'config.method={name!r} is not an available '
                           f'method; known: {", ".join(available())} (or a '
                           'dotted module path)')
  if not hasattr(module, 'make'):
    raise errors.UserError(f'config.method={name!r}: {module.__name__} has '
                           'no make(config, sample_batch)')
  return module


def dispatch(package: str, key: str, value: str, config, sample_batch):
  """``make`` of the flavour module ``<package>.<value>``.

  Args:
    package: the method package (``__name__`` of its ``__init__``).
    key: the config key that picks the flavour (for the error message).
    value: its value.
    config, sample_batch: passed to the flavour's ``make``.
  """
  path = importlib.import_module(package).__path__
  known = sorted(m.name for m in pkgutil.iter_modules(path))
  if value not in known:
    raise errors.UserError(f'config.{key}={value!r}; expected one of '
                           f'{", ".join(known)}')
  return importlib.import_module(f'{package}.{value}').make(config,
                                                            sample_batch)

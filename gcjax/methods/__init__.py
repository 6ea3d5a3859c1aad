"""Method plug-ins: ``get(name)`` imports ``gcjax.methods.<name>``."""

import importlib

METHODS = ('gan', 'omgd', 'cyclegan', 'kd', 'prune', 'kdit')


def get(name: str):
  """Returns the method module ``gcjax.methods.<name>`` (has ``make``)."""
  try:
    return importlib.import_module(f'gcjax.methods.{name}')
  except ModuleNotFoundError as e:
    if e.name == f'gcjax.methods.{name}':
      raise ValueError(
          f'config.method={name!r} is not an available method; '
          f'known: {", ".join(METHODS)}') from e
    raise

"""Device mesh and shardings for the one global-view, data-parallel program."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gcjax import errors

DATA_AXIS = 'data'


def create_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (global) devices, axis ``'data'``."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_global_batch(global_batch: int, mesh: Mesh,
                       what: str = 'data.batch_size') -> None:
  """Raises if the global batch does not split evenly over the mesh."""
  n = mesh.devices.size
  if global_batch <= 0 or global_batch % n:
    raise errors.UserError(
        f'{what}={global_batch} must be a positive multiple of the number of '
        f'devices ({n}); try {max(n, (global_batch // n) * n or n)}.')


def replicate_tree(tree, mesh: Mesh):
  """Shardings tree (all replicated) matching ``tree``'s structure."""
  rep = replicated(mesh)
  return jax.tree.map(lambda _: rep, tree)


def global_from_host(batch, mesh: Mesh):
  """Global arrays sharded P('data') from host data every process holds whole.

  Used for evaluation and sample grids, where all processes read the same
  test rows (training batches use ``data.pipeline.to_global`` instead, where
  each process holds only its own rows).
  """
  sh = batch_sharded(mesh)
  return {k: jax.make_array_from_callback(np.shape(v), sh,
                                          lambda idx, v=v: np.asarray(v)[idx])
          for k, v in batch.items()}

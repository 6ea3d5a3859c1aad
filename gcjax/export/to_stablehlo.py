"""A gcjax network as a serialized StableHLO artifact (``jax.export``).

The function exported is ``(variables, x) -> y``: the parameters are
arguments, not constants baked into the module, so one artifact serves any
weights of the same architecture and stays small. It is lowered for the
platforms named (default cpu, cuda and tpu) so that an artifact made on a
CPU machine runs on the others; running it needs JAX
(``jax.export.deserialize(...).call(variables, x)``), not gcjax. The model
runs in its XLA form (sub-pixel transposed convs, shift-and-add depthwise
convs), with batch norm in inference form (running statistics).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

PLATFORMS = ('cpu', 'cuda', 'tpu')


def input_spec(input_shape, input_dtype, batch: int | None):
  """The ``ShapeDtypeStruct`` of x; ``batch=None``: a symbolic batch ``N``."""
  if batch is None:
    b, = jax.export.symbolic_shape('N')
  else:
    b = batch
  return jax.ShapeDtypeStruct((b, *input_shape), np.dtype(input_dtype))


def export(apply_fn: Callable, variables, input_shape, input_dtype='float32',
           batch: int | None = None,
           platforms: Sequence[str] = PLATFORMS) -> bytes:
  """Serialized ``jax.export.Exported`` of ``apply_fn(variables, x)``."""
  specs = jax.tree.map(
      lambda v: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype),
      variables)
  exp = jax.export.export(jax.jit(apply_fn), platforms=tuple(platforms))(
      specs, input_spec(input_shape, input_dtype, batch))
  return bytes(exp.serialize())


def run(blob: bytes, variables, x) -> np.ndarray:
  """Runs a serialized artifact on this machine's default platform."""
  exp = jax.export.deserialize(bytearray(blob))
  return np.asarray(exp.call(variables, x))


def platforms_of(blob: bytes) -> tuple[str, ...]:
  """The platforms a serialized artifact was lowered for."""
  return tuple(jax.export.deserialize(bytearray(blob)).platforms)

"""The compute dtype: what networks compute in, apart from their state.

``config.compute_dtype`` 'bfloat16' runs every network that goes through
``state.apply_net`` with bfloat16 activations and matmuls/convs, while
params, optimizer state, batch-norm statistics, normalization arithmetic
and losses stay float32:

* ``apply_net`` casts the float params and the input to the compute dtype
  (the gradient flows back through the cast into the float32 params) and
  the outputs back to float32, so losses and metrics are float32;
* inside the network, a Flax method interceptor casts the float arguments
  of every submodule call to the compute dtype, except normalization layers
  (batch, layer, group, gcjax's instance norm), which get float32 inputs
  (their statistics and running averages are float32) and hand bfloat16 on.

The dtype is a context (read while a step is traced), set by ``train.py``
around the train step with :func:`traced_in`; 'float32' (the default) is the
plain float32 program, unchanged. Networks run outside ``apply_net`` (the
frozen VGG of the perceptual losses, LPIPS, Inception) stay float32.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

DTYPES = ('float32', 'bfloat16')
_DTYPE = contextvars.ContextVar('gcjax_compute_dtype', default='float32')


def check(name: str) -> None:
  """Raises ValueError unless ``name`` is one of :data:`DTYPES`."""
  if name not in DTYPES:
    raise ValueError(f'compute_dtype must be one of {DTYPES}, got {name!r}')


@contextlib.contextmanager
def compute_dtype(name: str):
  """Networks traced inside run with ``name`` activations (see module)."""
  check(name)
  token = _DTYPE.set(name)
  try:
    yield
  finally:
    _DTYPE.reset(token)


def traced_in(fn: Callable, name: str) -> Callable:
  """``fn`` whose calls (and so its jit trace) run inside
  ``compute_dtype(name)``."""
  check(name)

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with compute_dtype(name):
      return fn(*args, **kwargs)
  return wrapped


def current() -> str:
  return _DTYPE.get()


def cast_floats(tree: Any, dtype) -> Any:
  """Floating-point array leaves of ``tree`` cast to ``dtype``."""
  def cast(a):
    if isinstance(a, (jax.Array, jnp.ndarray)) and jnp.issubdtype(
        a.dtype, jnp.floating):
      return a.astype(dtype)
    return a
  return jax.tree.map(cast, tree)


def _is_norm(module: nn.Module) -> bool:
  from gcjax.models import layers
  return isinstance(module, (nn.BatchNorm, nn.LayerNorm, nn.GroupNorm,
                             layers.InstanceNorm))


def _interceptor(next_fun, args, kwargs, context):
  dtype = jnp.dtype(_DTYPE.get())
  if _is_norm(context.module):
    out = next_fun(*cast_floats(args, jnp.float32), **kwargs)
    return cast_floats(out, dtype)
  return next_fun(*cast_floats(args, dtype), **kwargs)


def apply(module: nn.Module, variables: dict, x: Any, **kwargs) -> Any:
  """``module.apply(variables, x, **kwargs)`` in the current compute dtype;
  float outputs come back float32. Plain ``apply`` under 'float32'."""
  name = _DTYPE.get()
  if name == 'float32':
    return module.apply(variables, x, **kwargs)
  dtype = jnp.dtype(name)
  variables = {k: cast_floats(v, dtype) if k == 'params' else v
               for k, v in variables.items()}
  with nn.intercept_methods(_interceptor):
    out = module.apply(variables, cast_floats(x, dtype), **kwargs)
  return cast_floats(out, jnp.float32)

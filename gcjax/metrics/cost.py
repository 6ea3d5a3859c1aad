"""Inference cost of a network: parameters, MACs, XLA FLOPs, measured latency.

MACs are counted from the jaxpr of the forward function (convolutions and
matrix products; element-wise ops, norms and pooling are ignored, as in the
GAN-compression literature). Two conventions are reported:

* ``literature``: every output element of a convolution costs
  ``kernel_h * kernel_w * in_channels / groups`` MACs, also for transposed
  convolutions. This is what torchprofile (used by GAN Compression, OMGD and
  the VEM paper) reports for ``ConvTranspose2d``.
* ``true``: a transposed convolution is a convolution over an input dilated
  with ``stride - 1`` zeros between pixels (``lhs_dilation`` in XLA); the
  multiplications by those inserted zeros are not work, so the count is
  divided by ``prod(lhs_dilation)``. For a stride-s transposed conv whose
  output is s times its input this is exactly ``input elements * k * k *
  out_channels``, the number of multiply-adds a scatter implementation does.
  Ordinary convolutions and matrix products count the same in both.

Checked against the papers: the Pix2Pix U-Net student (ngf 16, 256x256) is
1.219G literature / 0.406G true (OMGD/VEM: 1.22G), the CycleGAN ResNet-9
56.8G and its mobile student 1.41G. The ngf 64 U-Net counts 18.14G
literature, 2.5% under the 18.60G the papers quote: torchprofile's own
handlers (convolutions as above, batch norm free, LeakyReLU one MAC per
element: +0.002G) give the same 18.14G, and the quoted figure is not
reachable by any per-layer rule that also gives the student's 1.219G.

``measure_latency`` is the only function here that reads a clock.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import numpy as np


def count_params(tree: Any) -> int:
  """Total number of scalars in the array leaves of a pytree.

  Args:
    tree: pytree of arrays (e.g. ``variables['params']``).

  Returns:
    Sum of the leaves' sizes (python int).
  """
  return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def _conv_macs(eqn) -> tuple[int, int]:
  """(literature, true) MACs of one conv_general_dilated equation."""
  rhs_shape = eqn.invars[1].aval.shape
  out_shape = eqn.outvars[0].aval.shape
  rhs_spec = eqn.params['dimension_numbers'].rhs_spec
  # rhs_spec = (out feature dim, in feature dim, *spatial dims); the in
  # feature size of the kernel is already in_channels / feature_group_count.
  per_out = rhs_shape[rhs_spec[1]] * math.prod(
      rhs_shape[d] for d in rhs_spec[2:])
  lit = math.prod(out_shape) * per_out
  dil = math.prod(eqn.params['lhs_dilation'] or (1,))
  return lit, lit // dil


def _dot_macs(eqn) -> int:
  """MACs of a dot_general: batch * lhs free * rhs free * contracting."""
  lhs_shape = eqn.invars[0].aval.shape
  rhs_shape = eqn.invars[1].aval.shape
  (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
  contract = math.prod(lhs_shape[d] for d in lc)
  batch = math.prod(lhs_shape[d] for d in lb)
  lhs_free = math.prod(
      s for d, s in enumerate(lhs_shape) if d not in lc and d not in lb)
  rhs_free = math.prod(
      s for d, s in enumerate(rhs_shape) if d not in rc and d not in rb)
  return batch * lhs_free * rhs_free * contract


def _jaxpr_macs(jaxpr) -> tuple[int, int]:
  """(literature, true) MACs of a Jaxpr, recursing into sub-jaxprs."""
  lit = true = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'conv_general_dilated':
      a, b = _conv_macs(eqn)
    elif name == 'dot_general':
      a = b = _dot_macs(eqn)
    elif name == 'cond':
      # Only one branch runs; charge the most expensive.
      costs = [_jaxpr_macs(br.jaxpr) for br in eqn.params['branches']]
      a, b = max(c[0] for c in costs), max(c[1] for c in costs)
    else:
      # pjit/jit, closed_call, custom_jvp_call, custom_vjp_call, remat,
      # scan (body times length), while (body counted once: the trip count
      # is not static).
      a = b = 0
      for sub in jex_core.jaxprs_in_params(eqn.params):
        sa, sb = _jaxpr_macs(sub)
        a += sa
        b += sb
      if name == 'scan':
        a *= eqn.params['length']
        b *= eqn.params['length']
    lit += a
    true += b
  return lit, true


def count_macs(fn: Callable[..., Any], *args: Any) -> dict[str, int]:
  """Multiply-accumulates of one call ``fn(*args)``, from its jaxpr.

  Args:
    fn: a jax-traceable function (e.g. ``lambda x: model.apply(v, x)[0]``).
    *args: example arguments (arrays or ``jax.ShapeDtypeStruct``); only their
      shapes matter, the function is traced, not run.

  Returns:
    ``{'literature': int, 'true': int}``; see the module docstring. Batch
    size is included: pass a batch of one for per-image MACs.
  """
  from gcjax.models import layers
  # Transposed convs must appear as lhs-dilated convs for the literature
  # convention (gcjax runs them as sub-pixel convs otherwise). JAX caches
  # traces per Python callable and the context is not part of the key, so a
  # jitted fn is unwrapped and traced through a fresh function object: the
  # accounting formulation must neither reuse nor leave a cached trace that
  # the caller's own calls of fn would run.
  while hasattr(fn, 'lower') and hasattr(fn, '__wrapped__'):   # jax.jit
    fn = fn.__wrapped__
  with layers.dilated_transposed_convs():
    closed = jax.make_jaxpr(lambda *a: fn(*a))(*args)
  lit, true = _jaxpr_macs(closed.jaxpr)
  return {'literature': int(lit), 'true': int(true)}


def _sub_jaxpr(eqn):
  """The ClosedJaxpr a call-like equation runs (None for other ones)."""
  for key in ('jaxpr', 'call_jaxpr', 'fun_jaxpr'):
    sub = eqn.params.get(key)
    if isinstance(sub, jex_core.ClosedJaxpr):
      return sub
  return None


def _eval_nonzero(jaxpr, consts, args) -> tuple[list, float]:
  """Evaluates a Jaxpr; also returns its nonzero-weight true MACs."""
  env = {}

  def read(v):
    return v.val if isinstance(v, jex_core.Literal) else env[v]

  for v, x in zip(jaxpr.constvars, consts):
    env[v] = x
  for v, x in zip(jaxpr.invars, args):
    env[v] = x
  total = 0.0
  for eqn in jaxpr.eqns:
    vals = [read(v) for v in eqn.invars]
    sub = _sub_jaxpr(eqn)
    if sub is not None and eqn.primitive.name in (
        'pjit', 'jit', 'closed_call', 'core_call', 'custom_jvp_call',
        'custom_vjp_call', 'remat', 'checkpoint'):
      outs, t = _eval_nonzero(sub.jaxpr, sub.consts, vals)
      total += t
    else:
      outs = eqn.primitive.bind(*vals, **eqn.params)
      if not eqn.primitive.multiple_results:
        outs = [outs]
      if eqn.primitive.name == 'conv_general_dilated':
        density = float(jnp.mean(vals[1] != 0))
        total += density * _conv_macs(eqn)[1]
      elif eqn.primitive.name == 'dot_general':
        total += float(jnp.mean(vals[1] != 0)) * _dot_macs(eqn)
      else:
        # cond/scan/while: their convs counted dense (not in gcjax's nets).
        for sub_j in jex_core.jaxprs_in_params(eqn.params):
          total += _jaxpr_macs(sub_j)[1]
    for v, x in zip(eqn.outvars, outs):
      env[v] = x
  return [read(v) for v in jaxpr.outvars], total


def count_nonzero_macs(fn: Callable[..., Any], *args: Any) -> int:
  """True MACs of ``fn(*args)`` that multiply a nonzero weight.

  Each convolution's (and matrix product's) true MAC count is scaled by
  the fraction of nonzero entries of its kernel (right-hand operand):
  the theoretical saving of fine-grained sparsity. Dense kernels with
  zeros run no faster; a sparse kernel library would be needed to get it.
  The function is run (on concrete ``args``), not only traced.

  Args:
    fn: a jax-traceable function.
    *args: concrete arguments (e.g. variables and a batch of one).

  Returns:
    The count (python int); equals ``count_macs(...)['true']`` when no
    kernel holds an exact zero.
  """
  from gcjax.models import layers
  while hasattr(fn, 'lower') and hasattr(fn, '__wrapped__'):   # jax.jit
    fn = fn.__wrapped__
  with layers.dilated_transposed_convs():
    closed = jax.make_jaxpr(lambda *a: fn(*a))(*args)
    _, total = _eval_nonzero(closed.jaxpr, closed.consts,
                             jax.tree.leaves(args))
  return int(round(total))


def _abstract(x: Any) -> Any:
  if hasattr(x, 'shape') and hasattr(x, 'dtype'):
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype)
  return x


def xla_flops(fn: Callable[..., Any], *args: Any,
              backend: str | None = 'cpu') -> float:
  """FLOPs XLA's cost analysis assigns to the compiled ``fn(*args)``.

  A cross-check of ``count_macs``: about 2 x MACs for conv/matmul-dominated
  networks, less where XLA skips the taps that fall on zero padding or on
  the zeros a transposed conv inserts. That matters on small maps: a 4x4
  stride-2 pad-1 conv gets 25% of its MACs on a 2x2 input, 77% on 8x8, 97%
  on 64x64, so 32x32 U-Nets and DCGANs show XLA flops/2 at 50-70% of the
  true MACs while 256x256 models agree within a few percent. Compiled for the CPU backend by
  default because on GPU, convolutions become cuDNN custom calls that the
  cost analysis does not count.

  Args:
    fn: a jax-traceable function.
    *args: example arguments (arrays or ``jax.ShapeDtypeStruct``); only
      shapes and dtypes are used.
    backend: platform to compile for ('cpu', 'gpu', 'tpu'); None for the
      default device.

  Returns:
    The 'flops' entry of the compiled executable's cost analysis.
  """
  args = jax.tree.map(_abstract, args)
  if backend is None:
    compiled = jax.jit(fn).lower(*args).compile()
  else:
    with jax.default_device(jax.devices(backend)[0]):
      compiled = jax.jit(fn).lower(*args).compile()
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older jax: one dict per device.
    analysis = analysis[0]
  if not analysis or 'flops' not in analysis:
    raise ValueError(f'XLA cost analysis has no "flops" entry: {analysis}')
  return float(analysis['flops'])


def measure_latency(fn: Callable[..., Any], args: tuple[Any, ...],
                    n_warmup: int = 3, n_iters: int = 20) -> dict[str, float]:
  """Wall-clock latency of ``fn(*args)`` after warm-up (compilation included).

  Args:
    fn: the function to time; jit it first for the steady-state figure.
    args: its arguments (device arrays, so no host transfer is timed).
    n_warmup: untimed calls before measuring (absorb compilation).
    n_iters: timed calls; each waits for its result with
      ``block_until_ready``.

  Returns:
    ``{'median_s': float, 'p90_s': float}`` in seconds.
  """
  if n_iters < 1:
    raise ValueError(f'n_iters must be >= 1, got {n_iters}')
  for _ in range(n_warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(n_iters):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return {'median_s': float(statistics.median(times)),
          'p90_s': float(np.percentile(times, 90))}


def matmul_rate(n: int = 4096, n_iters: int = 5) -> float:
  """This device's f32 matmul rate in MAC/s: a jitted ``n x n`` product.

  The yardstick the benchmarks compare convolution throughput against
  (median of ``n_iters`` timed calls after one warm-up).
  """
  a = jnp.ones((n, n), jnp.float32)
  lat = measure_latency(jax.jit(lambda a: a @ a), (a,), n_warmup=1,
                        n_iters=n_iters)
  return n ** 3 / lat['median_s']


"""Builds deployment exports of one network and checks them against JAX.

:func:`build` returns, per format, the artifact bytes and the figures of
its check: the export is run (onnxruntime; ``jax.export.deserialize``) on
inputs it never saw (a fixed-seed draw, unrelated to any dataset), at the
export's batch size or, for a dynamic batch, at batch 1 and 3, and
compared with the network's JAX output. If the largest absolute error
exceeds the tolerance, :class:`CheckFailed` says by how much; nothing is
returned to be written. No file I/O here (``gcjax.export.__main__`` writes).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import jax
import numpy as np

from gcjax.export import to_onnx, to_stablehlo

FORMATS = ('onnx', 'stablehlo')
TOL = 1e-4
CHECK_SEED = 20260601
DYNAMIC_BATCHES = (1, 3)


class CheckFailed(RuntimeError):
  """An export's outputs differ from JAX's by more than the tolerance."""


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def input_kind(input_shape) -> str:
  """'image' ([H, W, C] in [-1, 1]) or 'latent' ([nz] ~ N(0, 1))."""
  return 'image' if len(input_shape) == 3 else 'latent'


def check_inputs(input_shape, input_dtype, batch: int) -> np.ndarray:
  """The check's inputs: uniform in [-1, 1] (images) or N(0, 1) (latents)."""
  rng = np.random.default_rng([CHECK_SEED, batch])
  shape = (batch, *input_shape)
  if input_kind(input_shape) == 'image':
    x = rng.uniform(-1.0, 1.0, shape)
  else:
    x = rng.standard_normal(shape)
  return x.astype(np.dtype(input_dtype))


def _ort_runner(blob: bytes):
  import onnxruntime as ort
  opts = ort.SessionOptions()
  opts.log_severity_level = 3
  sess = ort.InferenceSession(blob, opts, providers=['CPUExecutionProvider'])
  return lambda x: sess.run(None, {to_onnx.INPUT: x})[0]


def check(run: Callable, reference: Callable, input_shape, input_dtype,
          batches: Sequence[int], tol: float, what: str) -> dict:
  """Max abs error of ``run`` against ``reference`` on the check inputs.

  Raises:
    CheckFailed: the error exceeds ``tol``.
  """
  errs, lo, hi = [], np.inf, -np.inf
  for b in batches:
    x = check_inputs(input_shape, input_dtype, b)
    want = np.asarray(reference(x))
    got = np.asarray(run(x))
    if got.shape != want.shape:
      raise CheckFailed(f'{what}: output shape {got.shape} at batch {b}, '
                        f'JAX gives {want.shape}')
    errs.append(float(np.max(np.abs(got.astype(np.float64) - want))))
    lo, hi = min(lo, float(want.min())), max(hi, float(want.max()))
  err = max(errs)
  if not err <= tol:
    raise CheckFailed(f'{what}: max abs error {err:.3g} against JAX exceeds '
                      f'the tolerance {tol:g} by {err - tol:.3g} '
                      f'({err / tol:.1f}x); not written')
  return {'batches': list(batches), 'seed': CHECK_SEED,
          'inputs': ('uniform [-1, 1]' if input_kind(input_shape) == 'image'
                     else 'normal(0, 1)'),
          'max_abs_err': err, 'max_abs_err_per_batch': errs, 'tol': tol,
          'output_min': lo, 'output_max': hi}


def build(module, variables, input_shape, input_dtype='float32',
          formats: Sequence[str] = FORMATS, batch: int | None = None,
          transposed: str = 'convtranspose', tol: float = TOL,
          platforms: Sequence[str] = to_stablehlo.PLATFORMS) -> dict:
  """``{format: (bytes, info)}`` for ``module`` in inference form, checked.

  Args:
    module: a gcjax.models generator (``apply(v, x, train=False)``).
    variables: its variables (params, batch_stats).
    input_shape: the input without the batch.
    input_dtype: the input dtype.
    formats: a subset of ``FORMATS``.
    batch: fixed batch size, or None for a dynamic batch.
    transposed: ONNX form of transposed convs (``onnx_conv.FORMS``).
    tol: the largest max abs error accepted.
    platforms: StableHLO lowering platforms.

  Raises:
    CheckFailed: an export does not match JAX within ``tol``.
  """
  unknown = [f for f in formats if f not in FORMATS]
  if unknown:
    raise ValueError(f'unknown export formats {unknown}; known: {FORMATS}')
  variables = jax.tree.map(np.asarray, variables)

  def apply(v, x):
    return module.apply(v, x, train=False)[0]

  ref_jit = jax.jit(apply)
  reference = lambda x: ref_jit(variables, x)
  batches = DYNAMIC_BATCHES if batch is None else (batch,)
  out = {}
  if 'onnx' in formats:
    blob = to_onnx.convert(apply, variables, input_shape, input_dtype,
                           batch=batch, name=type(module).__name__,
                           transposed=transposed)
    info = check(_ort_runner(blob), reference, input_shape, input_dtype,
                 batches, tol, 'ONNX export')
    out['onnx'] = (blob, {'opset': to_onnx.OPSET, 'transposed': transposed,
                          'ops': to_onnx.op_counts(blob), 'check': info})
  if 'stablehlo' in formats:
    blob = to_stablehlo.export(apply, variables, input_shape, input_dtype,
                               batch=batch, platforms=platforms)
    info = check(lambda x: to_stablehlo.run(blob, variables, x), reference,
                 input_shape, input_dtype, batches, tol, 'StableHLO export')
    out['stablehlo'] = (blob, {'platforms': list(platforms), 'check': info})
  return out

"""Shared building blocks for the generator/discriminator zoo.

Normalization by name, reflection padding and convolutions with PyTorch's
padding semantics, so that ported networks (pix2pix, CycleGAN,
GAN-Compression, DCGAN) compute exactly what their PyTorch originals compute.
All tensors are NHWC.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# pix2pix/DCGAN initialize conv weights from N(0, 0.02).
CONV_INIT = nn.initializers.normal(stddev=0.02)

NORMS = ('batch', 'instance', 'layer', 'none')


def check_norm(norm: str, allowed: Sequence[str] = NORMS) -> None:
  """Raises ValueError unless ``norm`` is one of ``allowed``."""
  if norm not in allowed:
    raise ValueError(f'norm must be one of {tuple(allowed)}, got {norm!r}')


def norm_uses_bias(norm: str) -> bool:
  """pix2pix's rule: convs before a norm carry a bias unless it is batch norm.

  pix2pix sets ``use_bias = norm_layer is InstanceNorm2d``; with no norm at
  all a conv obviously needs its own bias. Layer norm has a learned shift, so
  it is treated like batch norm.
  """
  return norm in ('instance', 'none')


def _bn_scale_init(key: jax.Array, shape: Sequence[int],
                   dtype=jnp.float32) -> jax.Array:
  # pix2pix/DCGAN: batch norm weight ~ N(1, 0.02).
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


# Named composites: pure functions jitted under a fixed name, so that an
# exporter reading the jaxpr (``gcjax.export.onnx``) can emit one operator
# for them (ONNX ``InstanceNormalization``, ``Pad`` in reflect mode) instead
# of the primitives they trace to. Nested jits are inlined by XLA.
COMPOSITES = ('gcjax_instance_norm', 'gcjax_reflect_pad')


@jax.jit
def gcjax_instance_norm(x: jax.Array, epsilon) -> jax.Array:
  """(x - mean) / sqrt(biased var + epsilon) over H, W of [B, H, W, C].

  ``epsilon`` is an argument (not static) so that exporters read it from
  the call.
  """
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + epsilon)


def _reflect_index(n: int, pad: int) -> np.ndarray:
  """Source rows of an n-row axis reflection-padded by ``pad``."""
  return np.concatenate([np.arange(pad, 0, -1), np.arange(n),
                         np.arange(n - 2, n - 2 - pad, -1)]).astype(np.int32)


@functools.partial(jax.jit, static_argnums=1)
def gcjax_reflect_pad(x: jax.Array, pad: int) -> jax.Array:
  """Reflection padding of H and W of [B, H, W, C] by ``pad``.

  Two constant-index takes (one op each, fused with their neighbours)
  instead of ``jnp.pad(mode='reflect')``'s slices, reverses and
  concatenates, which XLA:CPU ran as five loop fusions per pad (20% of a
  MobileResNet's batch-4 time); the values are the same.
  """
  x = jnp.take(x, _reflect_index(x.shape[1], pad), axis=1)
  return jnp.take(x, _reflect_index(x.shape[2], pad), axis=2)


class InstanceNorm(nn.Module):
  """PyTorch ``InstanceNorm2d`` (no running stats): per-image, per-channel.

  Attributes:
    affine: learn a per-channel ``scale`` and ``bias`` (PyTorch
      ``affine=True``).
    epsilon: added to the biased variance (PyTorch default 1e-5).
  """
  affine: bool = False
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalizes ``x`` [B, H, W, C] over H and W."""
    y = gcjax_instance_norm(x, self.epsilon)
    if self.affine:
      c = x.shape[-1]
      y = y * self.param('scale', nn.initializers.ones, (c,))
      y = y + self.param('bias', nn.initializers.zeros, (c,))
    return y


def norm(kind: str, x: jax.Array, train: bool, name: str | None = None,
         affine: bool = False) -> jax.Array:
  """Applies the normalization ``kind`` to ``x`` [B, H, W, C].

  Must be called inside a compact method: the norm module becomes a child of
  the calling module under ``name``.

  Args:
    kind: 'batch' (running stats in 'batch_stats', PyTorch momentum 0.1 and
      eps 1e-5), 'instance' (per-image stats, also at inference), 'layer'
      (over H, W, C per example) or 'none' (identity).
    x: [B, H, W, C] float32.
    train: batch norm uses batch statistics and updates running ones.
    name: child module name.
    affine: instance norm only: learn scale and bias.

  Returns:
    [B, H, W, C] float32.
  """
  check_norm(kind)
  if kind == 'batch':
    return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                        epsilon=1e-5, scale_init=_bn_scale_init,
                        name=name)(x)
  if kind == 'instance':
    return InstanceNorm(affine=affine, name=name)(x)
  if kind == 'layer':
    return nn.LayerNorm(epsilon=1e-5, reduction_axes=(-3, -2, -1),
                        feature_axes=-1, name=name)(x)
  return x


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
  """PyTorch ``ReflectionPad2d(pad)`` on [B, H, W, C] (edge not repeated)."""
  if pad == 0:
    return x
  if pad >= x.shape[1] or pad >= x.shape[2]:
    raise ValueError(f'reflection pad {pad} needs H and W > {pad}, got '
                     f'input shape {x.shape}')
  return gcjax_reflect_pad(x, pad)


# Weight gradients of convs whose per-tap product [Ci, B*Ho*Wo] x
# [B*Ho*Wo, Co] has at least this many MACs are computed as one matmul per
# kernel tap (see :func:`tap_grad_conv`).
TAP_GRAD_MIN_MACS = 2**28
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _tap_weight_grad(x, dy, kh, kw, strides, padding):
  """dW[i, j] = sum over pixels of x shifted by tap (i, j), times dy."""
  (sh, sw), ((ph0, ph1), (pw0, pw1)) = strides, padding
  b, ho, wo, co = dy.shape
  ci = x.shape[-1]
  xp = jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
  d2 = dy.reshape(b * ho * wo, co)
  taps = [jax.lax.dot_general(
      xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
      .reshape(b * ho * wo, ci), d2, (((0,), (0,)), ((), ())))
          for i in range(kh) for j in range(kw)]
  return jnp.stack(taps).reshape(kh, kw, ci, co)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_tap_grad(x, w, strides, padding, tap_dw):
  return jax.lax.conv_general_dilated(x, w, strides, padding,
                                      dimension_numbers=_NHWC)


def _conv_tap_grad_fwd(x, w, strides, padding, tap_dw):
  return _conv_tap_grad(x, w, strides, padding, tap_dw), (x, w)


def _input_grad_as_conv(w, dy, padding):
  """A stride-1 conv's input gradient as a plain conv of ``dy`` with the
  flipped, in/out-swapped kernel, materialized (the barrier keeps XLA from
  folding the swap back into the conv's dimension numbers: that form ran
  ~10x slower on XLA:CPU inside loops such as the Langevin chain)."""
  kh, kw = w.shape[:2]
  (h0, h1), (w0, w1) = padding
  w_t = jax.lax.optimization_barrier(jnp.flip(w, (0, 1)).swapaxes(2, 3))
  return jax.lax.conv_general_dilated(
      dy, w_t, (1, 1), ((kh - 1 - h0, kh - 1 - h1), (kw - 1 - w0, kw - 1 - w1)),
      dimension_numbers=_NHWC)


def _conv_tap_grad_bwd(strides, padding, tap_dw, res, dy):
  x, w = res
  plain = lambda x, w: jax.lax.conv_general_dilated(
      x, w, strides, padding, dimension_numbers=_NHWC)
  if tap_dw:
    dw = _tap_weight_grad(x, dy, w.shape[0], w.shape[1], strides, padding)
  else:
    dw = jax.vjp(lambda w: plain(x, w), w)[1](dy)[0]
  if strides == (1, 1) and all(0 <= p <= k - 1 for pair, k in zip(
      padding, w.shape[:2]) for p in pair):
    dx = _input_grad_as_conv(w, dy, padding)
  else:
    dx = jax.vjp(lambda x: plain(x, w), x)[1](dy)[0]
  return dx.astype(x.dtype), dw.astype(w.dtype)


_conv_tap_grad.defvjp(_conv_tap_grad_fwd, _conv_tap_grad_bwd)


def _row_split_same_conv(x, w):
  """Stride-1 conv with zero padding k // 2 (odd k) as a 1 x k conv to
  k * Cout channels (one group per kernel row) and a sum of k row-shifted
  slices of it."""
  k, _, ci, co = w.shape
  p = k // 2
  b, h, wd, _ = x.shape
  w_rows = w.transpose(1, 2, 0, 3).reshape(1, k, ci, k * co)
  z = jax.lax.conv_general_dilated(
      x, w_rows, (1, 1), ((p, p), (p, p)), dimension_numbers=_NHWC)
  z = z.reshape(b, h + 2 * p, wd, k, co)
  return sum(z[:, i:i + h, :, i] for i in range(k))


def _plain_same_conv(x, w):
  p = w.shape[0] // 2
  return jax.lax.conv_general_dilated(x, w, (1, 1), ((p, p), (p, p)),
                                      dimension_numbers=_NHWC)


@jax.custom_vjp
def row_split_conv(x: jax.Array, w: jax.Array) -> jax.Array:
  """``lax.conv_general_dilated(x, w, (1, 1), ((k//2,) * 2,) * 2)`` for odd
  k, its forward pass computed by :func:`_row_split_same_conv`.

  XLA:CPU runs a conv with few output channels slowly (GAN-Compression's
  7x7 16 -> 3 head at 262x262: 30 ms at batch 4, a third of the
  MobileResNet; 10 ms this way). The gradients are those of the plain conv
  (XLA's), which were not slower.
  """
  return _row_split_same_conv(x, w)


def _row_split_fwd(x, w):
  return _row_split_same_conv(x, w), (x, w)


def _row_split_bwd(res, dy):
  x, w = res
  return jax.vjp(_plain_same_conv, x, w)[1](dy)


row_split_conv.defvjp(_row_split_fwd, _row_split_bwd)


def _row_split_applies(lhs, rhs, window_strides, padding) -> bool:
  k, kw, ci, co = rhs.shape
  return (k == kw and k % 2 == 1 and k >= 5 and co <= 4 and ci <= 32
          and tuple(window_strides) == (1, 1)
          and [tuple(p) for p in padding] == [(k // 2, k // 2)] * 2)


def tap_grad_conv(lhs, rhs, window_strides, padding, lhs_dilation=None,
                  rhs_dilation=None, dimension_numbers=None,
                  feature_group_count=1, precision=None,
                  preferred_element_type=None):
  """``lax.conv_general_dilated`` whose kernel gradient is k*k matmuls.

  XLA:CPU computes a conv's kernel gradient as a convolution whose window
  is the whole output gradient; on wide layers that ran at ~12 GMAC/s (the
  3x3 128 -> 128 convs of OMGD's deep teacher at 128x128, batch 4: 0.65-0.8
  s each, 30% of the teacher's forward+backward). Here, for plain NHWC/HWIO
  convs on CPU whose per-tap product has >= :data:`TAP_GRAD_MIN_MACS` MACs,
  the kernel gradient is one [Ci, pixels] x [pixels, Co] matmul per tap;
  values are XLA's own. The input gradient of a stride-1 conv is a plain
  conv with the flipped kernel (:func:`_input_grad_as_conv`; XLA's own form
  ran the VEM energy net's Langevin chain ~10x slower). Stride-1 odd-k
  'same' convs
  (k >= 5) from <= 32 to <= 4 channels run forward as
  :func:`row_split_conv`. Anything else (dilations,
  groups, other layouts, other backends, small strided layers, inside
  :func:`dilated_transposed_convs`) is ``lax.conv_general_dilated``. A
  drop-in for ``nn.Conv(conv_general_dilated=...)``.
  """
  plain = functools.partial(
      jax.lax.conv_general_dilated, lhs, rhs, window_strides, padding,
      lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
  if (lhs.ndim != 4 or feature_group_count != 1 or _DILATED.get()
      or isinstance(padding, str) or precision is not None
      or preferred_element_type is not None
      or any(d != 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
      or jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                        dimension_numbers)
      != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
      or jax.default_backend() != 'cpu'):
    return plain()
  if _row_split_applies(lhs, rhs, window_strides, padding):
    return row_split_conv(lhs, rhs)
  y_shape = jax.eval_shape(plain).shape
  b = lhs.shape[0] if isinstance(lhs.shape[0], int) else 1
  tap_dw = b * y_shape[1] * y_shape[2] * rhs.shape[2] * rhs.shape[3] >= (
      TAP_GRAD_MIN_MACS)
  strides = tuple(window_strides)
  if not tap_dw and strides != (1, 1):
    return plain()
  return _conv_tap_grad(lhs, rhs, strides, tuple(tuple(p) for p in padding),
                        tap_dw)


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0,
         use_bias: bool = True, groups: int = 1,
         name: str | None = None) -> nn.Conv:
  """PyTorch ``Conv2d(k, stride, padding)`` with zero padding; HWIO kernel.

  Its kernel gradient goes through :func:`tap_grad_conv`.
  """
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((padding, padding), (padding, padding)),
                 use_bias=use_bias, feature_group_count=groups,
                 kernel_init=CONV_INIT, conv_general_dilated=tap_grad_conv,
                 name=name)


def conv_valid(x: jax.Array, features: int, kernel: int,
               use_bias: bool = True, name: str | None = None) -> jax.Array:
  """PyTorch ``Conv2d(k)`` (stride 1, no padding) of ``x`` [B, H, W, C].

  Computed as the conv with zero padding k // 2 whose k // 2-wide border is
  cropped: the same values (each kept output reads only real pixels), but
  XLA:CPU runs a VALID conv 3-25x slower than the padded one (3x3 256->256
  on 64x64: 140 vs 31 ms; 7x7 64->3 on 262x262: 980 vs 36 ms; see
  experiments/results/bench_shapes_cpu.md). The extra border costs
  (H + k - 1)**2 / H**2 - 1 more MACs (6% for 3x3 at 64x64). Inside
  :func:`dilated_transposed_convs` (MAC accounting, ONNX export) the plain
  VALID conv is emitted. The parameters are those of ``conv(features,
  kernel, name=name)``: one ``nn.Conv`` child named ``name``.

  Args:
    x: [B, H, W, C], H and W >= kernel.
    features: output channels.
    kernel: odd side of the square kernel.
    use_bias: add a bias.
    name: child module name.

  Returns:
    [B, H - kernel + 1, W - kernel + 1, features].
  """
  p = kernel // 2
  if kernel % 2 == 0 or p == 0 or _DILATED.get():
    return conv(features, kernel, use_bias=use_bias, name=name)(x)
  y = conv(features, kernel, padding=p, use_bias=use_bias, name=name)(x)
  return y[:, p:y.shape[1] - p, p:y.shape[2] - p]


_DILATED = contextvars.ContextVar('gcjax_dilated_transpose', default=False)


@contextlib.contextmanager
def dilated_transposed_convs():
  """Traces transposed convs as lhs-dilated convs (for MAC accounting).

  Inside this context :class:`ConvTranspose` emits the zero-inserted
  formulation, whose jaxpr lets ``metrics.cost.count_macs`` report both the
  literature (per output element) and the true MAC count, and
  :class:`DepthwiseConv` the grouped conv (which ``count_macs`` counts).
  Numerics are the same; only speed differs.
  """
  token = _DILATED.set(True)
  try:
    yield
  finally:
    _DILATED.reset(token)


def _phase_taps(k: int, s: int, lo: int, r: int) -> list[tuple[int, int]]:
  """Kernel taps t (with input offsets d) that reach output phase r."""
  taps = [(t, (r + t - lo) // s) for t in range(k) if (r + t - lo) % s == 0]
  return sorted(taps, key=lambda td: td[1])


def subpixel_conv_transpose(x: jax.Array, kernel: jax.Array, stride: int,
                            lo: int, hi: int) -> jax.Array:
  """A stride-s transposed conv computed as s*s small convs + interleave.

  Equals ``lax.conv_general_dilated(x, kernel, (1, 1), ((lo, hi),) * 2,
  lhs_dilation=(s, s))`` (NHWC/HWIO) up to float rounding, without the
  zero-inserted input: output phase (rh, rw) is a stride-1 conv of ``x`` with
  the taps of ``kernel`` that land on real pixels. It does the true MACs only,
  and its gradient avoids XLA:CPU's very slow path for lhs-dilated convs
  (measured 4-10x faster forward+backward on the U-Net's shapes).

  Args:
    x: [B, H, W, Cin].
    kernel: [k, k, Cin, Cout] (Flax ``ConvTranspose`` layout, unflipped).
    stride: s; the output side must be a multiple of s.
    lo, hi: padding of the dilated input (see ``conv_transpose``).

  Returns:
    [B, (H - 1) * s + lo + hi - k + 2, ..., Cout].
  """
  b, h, w, _ = x.shape
  k, s = kernel.shape[0], stride
  h_out = (h - 1) * s + lo + hi - k + 2
  w_out = (w - 1) * s + lo + hi - k + 2
  mh, mw = h_out // s, w_out // s
  rows = []
  for rh in range(s):
    th = _phase_taps(k, s, lo, rh)
    cols = []
    for rw in range(s):
      tw = _phase_taps(k, s, lo, rw)
      ah, aw = th[0][1], tw[0][1]
      sub = kernel[np.array([t for t, _ in th])][:, np.array([t for t, _ in tw])]
      plh, plw = max(0, -ah), max(0, -aw)
      phh = max(0, ah + mh + len(th) - 1 - h)
      phw = max(0, aw + mw + len(tw) - 1 - w)
      xp = jnp.pad(x, ((0, 0), (plh, phh), (plw, phw), (0, 0)))
      z = jax.lax.conv_general_dilated(
          xp, sub, (1, 1), 'VALID',
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      oh, ow = ah + plh, aw + plw
      cols.append(z[:, oh:oh + mh, ow:ow + mw])
    rows.append(jnp.stack(cols, axis=3))        # [B, mh, mw, s, C]
  y = jnp.stack(rows, axis=2)                   # [B, mh, s, mw, s, C]
  return y.reshape(b, h_out, w_out, kernel.shape[-1])


def matmul_conv_transpose(x: jax.Array, kernel: jax.Array, stride: int,
                          lo: int, hi: int) -> jax.Array:
  """A transposed conv as one matmul followed by an overlap-add.

  Equals ``lax.conv_general_dilated(x, kernel, (1, 1), ((lo, hi),) * 2,
  lhs_dilation=(s, s))`` (NHWC/HWIO) up to float rounding. Every input pixel
  is multiplied by all k*k taps at once (``x @ kernel`` as [B*H*W, Cin] x
  [Cin, k*k*Cout], the true MACs, at XLA's matmul rate), then each output
  pixel sums the (k/s)**2 tap products that land on it. Input pixel i
  reaches output o = s*i + lo - t through tap t. When the batch has at most
  Cout / 2 pixels the products are k*k matmuls against the kernel's own
  layout instead (no copy of a large kernel). On XLA:CPU this is the
  fastest form measured on the U-Net's shapes, above all its gradient
  (2-8x faster than :func:`subpixel_conv_transpose`, which is 4-10x faster
  than the lhs-dilated conv; experiments/results/bench_vs_pytorch.md). The
  intermediate holds k*k*Cout values per input pixel.

  Args:
    x: [B, H, W, Cin].
    kernel: [k, k, Cin, Cout] (Flax ``ConvTranspose`` layout, unflipped).
    stride: s >= 1.
    lo, hi: padding of the dilated input (see ``conv_transpose``).

  Returns:
    [B, (H - 1) * s + lo + hi - k + 2, ..., Cout].
  """
  b, h, w, cin = x.shape
  kh, kw, _, cout = kernel.shape
  s = stride
  h_out = (h - 1) * s + lo + hi - kh + 2
  w_out = (w - 1) * s + lo + hi - kw + 2
  mh, mw = -(-h_out // s), -(-w_out // s)
  n = b * h * w
  # A symbolic batch (an export with a dynamic batch) counts as 1 image.
  if 2 * h * w * (b if isinstance(b, int) else 1) <= cout:
    # Few pixels, wide layer (the U-Net's inner levels): one matmul per
    # tap against the kernel as stored, [k*k] x [N, Cin] x [Cin, Cout];
    # the other form's [Cin, k*k*Cout] copy of the kernel would cost more
    # than the products (2x2x1024 -> 512: 0.8 vs 11 ms forward).
    z = jax.lax.dot_general(
        jnp.broadcast_to(x.reshape(1, n, cin), (kh * kw, n, cin)),
        kernel.reshape(kh * kw, cin, cout),
        (((2,), (1,)), ((0,), (0,))))
    tap = lambda th, tw: z[th * kw + tw].reshape(b, h, w, cout)
  else:
    z = jnp.dot(x.reshape(n, cin),
                kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout))
    z = z.reshape(b, h, w, kh, kw, cout)
    tap = lambda th, tw: z[:, :, :, th, tw]

  def shifted(th: int, tw: int, dh: int, dw: int) -> jax.Array:
    # Phase rows q read input rows q + dh (zero outside [0, H)).
    zz = jnp.pad(tap(th, tw),
                 ((0, 0), (max(0, -dh), max(0, dh + mh - h)),
                  (max(0, -dw), max(0, dw + mw - w)), (0, 0)))
    return zz[:, max(0, dh):max(0, dh) + mh, max(0, dw):max(0, dw) + mw]

  rows = []
  for rh in range(s):
    cols = []
    for rw in range(s):
      terms = [shifted(th, tw, dh, dw)
               for th, dh in _phase_taps(kh, s, lo, rh)
               for tw, dw in _phase_taps(kw, s, lo, rw)]
      cols.append(sum(terms[1:], terms[0]) if terms
                  else jnp.zeros((b, mh, mw, cout), z.dtype))
    rows.append(jnp.stack(cols, axis=3))        # [B, mh, mw, s, C]
  y = jnp.stack(rows, axis=2).reshape(b, mh * s, mw * s, cout)
  return y[:, :h_out, :w_out]


TRANSPOSED_CONV_FORMS = ('auto', 'matmul', 'subpixel', 'dilated')
_TCONV_FORM = contextvars.ContextVar('gcjax_tconv_form', default='auto')


def transposed_conv_form() -> str:
  """The form :class:`ConvTranspose` traces: the context's, or for 'auto'
  'matmul' on CPU and 'subpixel' on other backends."""
  form = _TCONV_FORM.get()
  if form == 'auto':
    return 'matmul' if jax.default_backend() == 'cpu' else 'subpixel'
  return form


@contextlib.contextmanager
def transposed_convs(form: str):
  """Traces :class:`ConvTranspose` in ``form`` (one of
  :data:`TRANSPOSED_CONV_FORMS`); all compute the same function."""
  if form not in TRANSPOSED_CONV_FORMS:
    raise ValueError(f'transposed conv form must be one of '
                     f'{TRANSPOSED_CONV_FORMS}, got {form!r}')
  token = _TCONV_FORM.set(form)
  try:
    yield
  finally:
    _TCONV_FORM.reset(token)


class ConvTranspose(nn.Module):
  """PyTorch-semantics transposed conv; params as Flax ``nn.ConvTranspose``.

  ``kernel`` [k, k, Cin, Cout] and ``bias`` [Cout] have the names, shapes and
  initializers of ``nn.ConvTranspose``, so checkpoints and converters are
  interchangeable. The computation (:func:`transposed_conv_form`): on CPU
  :func:`matmul_conv_transpose`; elsewhere :func:`subpixel_conv_transpose`
  where the output side divides by the stride, else the lhs-dilated conv
  (also inside :func:`dilated_transposed_convs`, for MAC accounting and
  export).
  """
  features: int
  kernel: int
  stride: int
  lo: int
  hi: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel
    w = self.param('kernel', CONV_INIT, (k, k, x.shape[-1], self.features))
    s = self.stride
    h_out = (x.shape[1] - 1) * s + self.lo + self.hi - k + 2
    w_out = (x.shape[2] - 1) * s + self.lo + self.hi - k + 2
    form = 'dilated' if _DILATED.get() else transposed_conv_form()
    if form == 'matmul':
      y = matmul_conv_transpose(x, w, s, self.lo, self.hi)
    elif (form == 'subpixel' and s > 1 and h_out % s == 0
          and w_out % s == 0):
      y = subpixel_conv_transpose(x, w, s, self.lo, self.hi)
    else:
      y = jax.lax.conv_general_dilated(
          x, w, (1, 1), ((self.lo, self.hi), (self.lo, self.hi)),
          lhs_dilation=(s, s), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,))
    return y


class DepthwiseConv(nn.Module):
  """A stride-1, unpadded kxk depthwise conv; params as ``nn.Conv`` with
  ``feature_group_count = channels`` (``kernel`` [k, k, 1, C], ``bias`` [C]).

  Computed as k*k shifted multiply-adds, which XLA fuses into one loop: on
  XLA:CPU the grouped ``conv_general_dilated`` runs at ~0.2 GMAC/s (a 3x3
  depthwise conv on 64x64x64 took 14 ms, 90% of a MobileResNet's latency);
  this form is memory-bound instead. Inside :func:`dilated_transposed_convs`
  (MAC accounting) it emits the grouped conv so ``count_macs`` sees it.
  """
  kernel: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, c = self.kernel, x.shape[-1]
    w = self.param('kernel', CONV_INIT, (k, k, 1, c))
    if _DILATED.get():
      y = jax.lax.conv_general_dilated(
          x, w, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
          feature_group_count=c)
    else:
      h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
      if h < 1 or wd < 1:
        raise ValueError(f'DepthwiseConv: input {x.shape} smaller than the '
                         f'{k}x{k} kernel')
      w = w.astype(x.dtype)
      y = sum(x[:, i:i + h, j:j + wd, :] * w[i, j, 0]
              for i in range(k) for j in range(k))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (c,))
    return y


def conv_transpose(features: int, kernel: int, stride: int, padding: int,
                   output_padding: int = 0, use_bias: bool = True,
                   name: str | None = None) -> ConvTranspose:
  """PyTorch ``ConvTranspose2d(k, stride, padding, output_padding)``.

  Output size (H - 1) * stride - 2 * padding + kernel + output_padding.
  A transposed conv is a stride-1 conv over the input dilated by ``stride``
  (zeros between pixels), padded by ``kernel - 1 - padding`` before and
  ``kernel - 1 - padding + output_padding`` after, with the spatially
  flipped kernel. Like Flax's ``ConvTranspose`` (``transpose_kernel=False``)
  the HWIO kernel is not flipped here: it equals the PyTorch weight [in, out,
  kh, kw] transposed to [kh, kw, in, out] and flipped in kh and kw (see
  ``convert.py``).
  """
  lo = kernel - 1 - padding
  hi = kernel - 1 - padding + output_padding
  if lo < 0:
    raise ValueError(f'conv_transpose padding {padding} > kernel - 1 '
                     f'({kernel - 1}) is not supported')
  return ConvTranspose(features, kernel, stride, lo, hi, use_bias=use_bias,
                       name=name)


def dropout(x: jax.Array, rate: float, train: bool) -> jax.Array:
  """Dropout with rng stream 'dropout'; identity at inference or rate 0."""
  if rate <= 0.0:
    return x
  return nn.Dropout(rate=rate, deterministic=not train)(x)


def avg_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``."""
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  window, strides = (1, 3, 3, 1), (1, 2, 2, 1)
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
  return total / count

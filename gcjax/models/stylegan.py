"""A compact style-based generator and a residual discriminator with an
encoder head (StyleGAN2-like, no noise inputs, no minibatch stddev).

Generator: a mapping network z -> w (``map_layers`` equalized dense layers,
no pixel norm on z) and a synthesis network from a learned 4x4 constant
through modulated 3x3 convs with demodulation (StyleGAN2) and skip-style
toRGB layers up to ``resolution``. Every synthesis layer reads its own w
(``ws[:, i]``), so styles can be mixed per layer (:func:`mix_styles`).

Choices (documented differences from StyleGAN2 and from the DLSGAN
author's code):

* Demodulation is StyleGAN2's (the author's code normalizes differently).
* Modulation scales the input channels and demodulation the output
  channels around one shared conv (StyleGAN2's non-fused path): the same
  numbers as a per-example weight, without a grouped conv (slow on CPU).
* Upsampling is bilinear x2 (the [1, 3, 3, 1] filter of StyleGAN2's
  upfirdn) before the conv; the discriminator average-pools after its
  second conv.
* All weights use the equalized learning rate (N(0, 1) init, scaled by
  1/sqrt(fan-in) at run time); activations are leaky ReLU(0.2) x sqrt(2).

Both networks return ``(output, features)``; the generator's features are
the per-resolution maps ``res<r>``, the discriminator's the block outputs
``block<r>``, ``penultimate`` and ``latent`` (the encoder head).

An optional ``dls/scale`` variable (a [z_dim] vector, e.g. DLSGAN's latent
scale) multiplies z before mapping; exported DLS generators carry it so
that ``G(z)`` with z ~ N(0, I) samples as in training.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

SQRT2 = math.sqrt(2.0)
DLS = 'dls'


def channels(res: int, ch_base: int, ch_max: int) -> int:
  """Width at resolution ``res``: min(ch_base // res, ch_max), at least 1."""
  return max(1, min(ch_base // res, ch_max))


def num_ws(resolution: int) -> int:
  """w inputs of the synthesis net: one per conv, plus the last toRGB.

  A toRGB shares its w with the next block's first conv (StyleGAN2).
  """
  return 2 * int(math.log2(resolution)) - 2


def check_resolution(resolution: int) -> None:
  if resolution < 8 or resolution & (resolution - 1):
    raise ValueError(f'style-based networks need a power-of-two resolution '
                     f'>= 8, got {resolution}')


def lrelu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, 0.2) * SQRT2


def upsample2x(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), 'bilinear')


def downsample2x(x: jax.Array) -> jax.Array:
  return nn.avg_pool(x, (2, 2), (2, 2))


def mix_styles(w1: jax.Array, w2: jax.Array, cutoff: jax.Array,
               n_ws: int) -> jax.Array:
  """Per-layer styles: ``w1`` for layers < cutoff, ``w2`` from cutoff on.

  Args:
    w1, w2: [B, w_dim] float32 (one w per example).
    cutoff: [B] int32 in [0, n_ws]; n_ws means no mixing.
    n_ws: number of synthesis layers (:func:`num_ws`).

  Returns:
    [B, n_ws, w_dim] float32.
  """
  layer = jnp.arange(n_ws)[None, :, None]
  return jnp.where(layer < cutoff[:, None, None], w1[:, None], w2[:, None])


class EqualDense(nn.Module):
  """Dense layer with equalized learning rate."""
  features: int
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.param('kernel', nn.initializers.normal(1.0),
                   (x.shape[-1], self.features))
    b = self.param('bias', nn.initializers.constant(self.bias_init),
                   (self.features,))
    # The constant scales the [B, features] product, not the kernel (no
    # elementwise pass over the weights per call).
    return (x @ w) * (1.0 / math.sqrt(x.shape[-1])) + b


class EqualConv(nn.Module):
  """'SAME' conv with equalized learning rate (NHWC)."""
  features: int
  kernel: int = 3
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel, x.shape[-1]
    w = self.param('kernel', nn.initializers.normal(1.0),
                   (k, k, cin, self.features))
    y = jax.lax.conv_general_dilated(
        x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = y * (1.0 / math.sqrt(k * k * cin))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,))
    return y


class ModulatedConv(nn.Module):
  """StyleGAN2's modulated conv: style from w, optional demodulation.

  Attributes:
    features: output channels.
    kernel: kernel size.
    demodulate: normalize each output channel to unit expected std.
    up: bilinear x2 upsampling before the conv.
  """
  features: int
  kernel: int = 3
  demodulate: bool = True
  up: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    """x [B, H, W, Cin], w [B, w_dim] -> [B, H', W', features] (no bias)."""
    k, cin = self.kernel, x.shape[-1]
    style = EqualDense(cin, bias_init=1.0, name='affine')(w)     # [B, Cin]
    weight = self.param('kernel', nn.initializers.normal(1.0),
                        (k, k, cin, self.features))
    # The equalized-lr constant 1/sqrt(fan_in) scales the [B, Cin] style
    # rather than the kernel (the same products, without an elementwise
    # pass over the kernel per call).
    style = style / math.sqrt(k * k * cin)
    if self.up:
      x = upsample2x(x)
    y = jax.lax.conv_general_dilated(
        x * style[:, None, None, :], weight, (1, 1), 'SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.demodulate:
      # sum over (kh, kw, cin) of (weight * style)^2, per example and cout,
      # as one [B, k*k*Cin] x [k*k*Cin, Cout] matmul: XLA:CPU ran the
      # kernel's sum over its two leading axes at ~0.2 GB/s (2.7 ms of a
      # 48 ms batch-1 call per layer).
      sq = jnp.square(style)                              # [B, Cin]
      sq = jnp.broadcast_to(sq[:, None], (sq.shape[0], k * k, cin))
      power = (sq.reshape(-1, k * k * cin)
               @ jnp.square(weight).reshape(k * k * cin, self.features))
      y = y * jax.lax.rsqrt(power + 1e-8)[:, None, None, :]
    return y


class StyleLayer(nn.Module):
  """Modulated 3x3 conv + bias + leaky ReLU."""
  features: int
  up: bool = False

  @nn.compact
  def __call__(self, x, w):
    y = ModulatedConv(self.features, 3, up=self.up, name='conv')(x, w)
    return lrelu(y + self.param('bias', nn.initializers.zeros,
                                (self.features,)))


class ToRGB(nn.Module):
  """Modulated 1x1 conv to image channels (no demodulation) + bias."""
  out_ch: int

  @nn.compact
  def __call__(self, x, w):
    y = ModulatedConv(self.out_ch, 1, demodulate=False, name='conv')(x, w)
    return y + self.param('bias', nn.initializers.zeros, (self.out_ch,))


class MappingNetwork(nn.Module):
  """z -> w: ``n_layers`` equalized dense layers with leaky ReLU."""
  w_dim: int = 512
  n_layers: int = 8

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z
    for i in range(self.n_layers):
      h = lrelu(EqualDense(self.w_dim, name=f'dense{i}')(h))
    return h


class StyleGenerator(nn.Module):
  """z -> (image, per-resolution features), one w input per layer.

  Attributes:
    z_dim: latent size.
    w_dim: style size.
    map_layers: dense layers of the mapping network.
    resolution: output size (power of two, >= 8).
    out_ch: image channels.
    ch_base, ch_max: width at resolution r is min(ch_base // r, ch_max).

  Methods (``module.apply(v, ..., method=...)``): ``__call__(z)``,
  ``map(z) -> w`` [B, w_dim], ``synthesize(ws) -> (image, feats)`` with
  ws [B, num_ws, w_dim]; :func:`mix_styles` builds mixed ``ws``.
  """
  z_dim: int = 512
  w_dim: int = 512
  map_layers: int = 8
  resolution: int = 32
  out_ch: int = 3
  ch_base: int = 1024
  ch_max: int = 64

  @property
  def num_ws(self) -> int:
    return num_ws(self.resolution)

  def setup(self):
    check_resolution(self.resolution)
    self.mapping = MappingNetwork(self.w_dim, self.map_layers)
    self.const = self.param('const', nn.initializers.normal(1.0),
                            (4, 4, self._ch(4)))
    n_up = int(math.log2(self.resolution)) - 2
    convs = [StyleLayer(self._ch(4), name='conv4')]
    rgbs = [ToRGB(self.out_ch, name='rgb4')]
    for i in range(n_up):
      r = 8 * 2 ** i
      convs += [StyleLayer(self._ch(r), up=True, name=f'conv{r}_up'),
                StyleLayer(self._ch(r), name=f'conv{r}')]
      rgbs.append(ToRGB(self.out_ch, name=f'rgb{r}'))
    self.convs, self.rgbs = convs, rgbs

  def _ch(self, res: int) -> int:
    return channels(res, self.ch_base, self.ch_max)

  def map(self, z: jax.Array) -> jax.Array:
    """[B, z_dim] -> w [B, w_dim]; z is multiplied by ``dls/scale`` if the
    variables carry one."""
    if z.ndim != 2 or z.shape[1] != self.z_dim:
      raise ValueError(f'StyleGenerator expects z of shape [B, {self.z_dim}]'
                       f', got {z.shape}')
    if self.has_variable(DLS, 'scale'):
      z = z * self.get_variable(DLS, 'scale')
    return self.mapping(z)

  def synthesize(self, ws: jax.Array
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Styles [B, num_ws, w_dim] -> (images [B, R, R, out_ch] in about
    [-1, 1], feats ``res<r>`` [B, r, r, C_r])."""
    if ws.ndim != 3 or ws.shape[1] != self.num_ws:
      raise ValueError(f'StyleGenerator.synthesize expects ws of shape '
                       f'[B, {self.num_ws}, w_dim], got {ws.shape}')
    x = jnp.broadcast_to(self.const, (ws.shape[0], *self.const.shape))
    x = self.convs[0](x, ws[:, 0])
    img = self.rgbs[0](x, ws[:, 1])
    feats = {'res4': x}
    for i, rgb in enumerate(self.rgbs[1:]):
      x = self.convs[1 + 2 * i](x, ws[:, 1 + 2 * i])
      x = self.convs[2 + 2 * i](x, ws[:, 2 + 2 * i])
      img = upsample2x(img) + rgb(x, ws[:, 3 + 2 * i])
      feats[f'res{x.shape[1]}'] = x
    return img, feats

  def __call__(self, z: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """z [B, z_dim] -> (images [B, R, R, out_ch], feats)."""
    del train
    w = self.map(z)
    return self.synthesize(jnp.repeat(w[:, None], self.num_ws, axis=1))


class DBlock(nn.Module):
  """Residual block: two 3x3 convs then avg-pool, 1x1 skip, / sqrt(2)."""
  features: int
  out_features: int

  @nn.compact
  def __call__(self, x):
    y = lrelu(EqualConv(self.features, 3, name='conv0')(x))
    y = downsample2x(lrelu(EqualConv(self.out_features, 3, name='conv1')(y)))
    skip = EqualConv(self.out_features, 1, use_bias=False,
                     name='skip')(downsample2x(x))
    return (y + skip) / SQRT2


class StyleDiscriminator(nn.Module):
  """Residual discriminator with two heads: a logit and a z_dim latent.

  Attributes:
    resolution: input size (power of two, >= 8).
    z_dim: size of the encoder head (0: no encoder head).
    ch_base, ch_max: widths as in :class:`StyleGenerator`.
  """
  resolution: int = 32
  z_dim: int = 512
  ch_base: int = 1024
  ch_max: int = 64

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scores (and encodes) images.

    Args:
      x: [B, R, R, C] float32 in [-1, 1].
      train: unused (no batch statistics, no dropout).

    Returns:
      (logits [B, 1], feats) with ``block<r>`` the output of the block at
      input resolution r (r/2 x r/2 maps), ``penultimate`` [B, C] and, with
      z_dim > 0, ``latent`` [B, z_dim] (the predicted z).
    """
    del train
    check_resolution(self.resolution)
    if x.ndim != 4 or x.shape[1:3] != (self.resolution, self.resolution):
      raise ValueError(f'StyleDiscriminator expects [B, {self.resolution}, '
                       f'{self.resolution}, C], got {x.shape}')

    def ch(r):
      return channels(r, self.ch_base, self.ch_max)

    h = lrelu(EqualConv(ch(self.resolution), 1, name='from_rgb')(x))
    feats = {}
    r = self.resolution
    while r > 4:
      h = DBlock(ch(r), ch(r // 2), name=f'block{r}')(h)
      feats[f'block{r}'] = h
      r //= 2
    h = lrelu(EqualConv(ch(4), 3, name='conv4')(h))
    h = lrelu(EqualDense(ch(4), name='fc')(h.reshape(h.shape[0], -1)))
    feats['penultimate'] = h
    logits = EqualDense(1, name='logit')(h)
    if self.z_dim:
      feats['latent'] = EqualDense(self.z_dim, name='latent')(h)
    return logits, feats

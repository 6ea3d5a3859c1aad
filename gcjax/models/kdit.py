"""KDIT students: a small StarGANv2-like I2I model, a class-conditional X2I
generator, a class embedding, a multi-head discriminator and hint layers.

Every network returns ``(output, features)``; feature names are what the
distillation losses pair with the teacher's (``gcjax.objectives.kdit``):

* :class:`I2IStudent` (content encoder E_S, reference encoder E_R,
  generator G_S in one module): ``__call__(x)`` takes the source and the
  reference stacked on channels ([B, R, R, 2C]) and returns G_S(E_S(src),
  E_R(ref)); features ``content<r>`` (E_S, r = map side), ``ref<r>``
  (E_R) and ``gen<r>`` (G_S). Methods ``content``, ``style``, ``decode``
  run the parts alone.
* :class:`MappingNet`: z -> one style per class (the latent-guided
  variant, StarGANv2's class-specific mapping heads on a shared trunk).
* :class:`X2IGenerator`: noise z and a condition vector c -> image;
  ``generate(z, c, t_feat)`` adds an optional teacher feature map to its
  first (4x4) feature (KDIT footnote 4); ``__call__`` takes ``[z, c]``
  concatenated (one array, for cost tables and exports).
* :class:`ClassEmbed`: class label -> c (stage 2 of the X2I student).
* :class:`ClassDiscriminator`: residual D with one logit per class
  (StarGANv2's multi-task D; the caller picks the row's class).
* :class:`Hints`: FitNets-style 1x1 convs from student feature widths to
  the teacher's where they differ (identity where they match).

Blocks are StarGANv2's (pre-activation residual blocks, AdaIN from the
style in the generator) at toy width; images are [B, R, R, C] in about
[-1, 1] (no output squashing, as StarGANv2 and the teacher).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

SQRT2 = math.sqrt(2.0)


def _act(x):
  return nn.leaky_relu(x, 0.2)


def _down(x):
  return nn.avg_pool(x, (2, 2), (2, 2))


def _up(x):
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), 'nearest')


def check_resolution(resolution: int) -> None:
  if resolution < 8 or resolution & (resolution - 1):
    raise ValueError(f'KDIT students need a power-of-two resolution >= 8, '
                     f'got {resolution}')


class ResBlk(nn.Module):
  """Pre-activation residual block with optional 2x average-pool."""
  features: int
  down: bool = False

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(x.shape[-1], (3, 3), name='conv0')(_act(x))
    if self.down:
      y = _down(y)
    y = nn.Conv(self.features, (3, 3), name='conv1')(_act(y))
    skip = x
    if x.shape[-1] != self.features:
      skip = nn.Conv(self.features, (1, 1), use_bias=False, name='skip')(x)
    if self.down:
      skip = _down(skip)
    return (skip + y) / SQRT2


class AdaIN(nn.Module):
  """Instance norm with per-channel scale and shift predicted from s."""

  @nn.compact
  def __call__(self, x, s):
    c = x.shape[-1]
    h = nn.Dense(2 * c, name='fc')(s)
    gamma, beta = h[:, None, None, :c], h[:, None, None, c:]
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.var(x, axis=(1, 2), keepdims=True)
    return (1.0 + gamma) * (x - mean) * jax.lax.rsqrt(var + 1e-5) + beta


class AdaResBlk(nn.Module):
  """Residual block with AdaIN from a style, optional 2x nearest upsampling."""
  features: int
  up: bool = False

  @nn.compact
  def __call__(self, x, s):
    y = _act(AdaIN(name='norm0')(x, s))
    if self.up:
      y = _up(y)
    y = nn.Conv(self.features, (3, 3), name='conv0')(y)
    y = _act(AdaIN(name='norm1')(y, s))
    y = nn.Conv(self.features, (3, 3), name='conv1')(y)
    skip = _up(x) if self.up else x
    if x.shape[-1] != self.features:
      skip = nn.Conv(self.features, (1, 1), use_bias=False, name='skip')(skip)
    return (skip + y) / SQRT2


class I2IStudent(nn.Module):
  """Content encoder, reference encoder and generator (StarGANv2-like).

  Attributes:
    resolution: image side (power of two >= 8); the content code is at
      ``resolution // 4``.
    out_ch: image channels.
    ch: base width (content code and generator width ``2 * ch``).
    style_dim: size of the style vector s.
  """
  resolution: int = 32
  out_ch: int = 1
  ch: int = 16
  style_dim: int = 32

  def setup(self):
    check_resolution(self.resolution)
    self.content_enc = _ContentEncoder(self.ch)
    self.style_enc = _StyleEncoder(self.ch, self.style_dim)
    self.decoder = _Decoder(self.ch, self.out_ch)

  def __call__(self, x, train: bool = False):
    """x [B, R, R, 2C] (source ++ reference) -> (image [B, R, R, C],
    feats ``content<r>``, ``ref<r>``, ``gen<r>``)."""
    del train
    c = self.out_ch
    if x.ndim != 4 or x.shape[-1] != 2 * c:
      raise ValueError(f'I2IStudent expects [B, R, R, {2 * c}] (source and '
                       f'reference on channels), got {x.shape}')
    content, f_c = self.content(x[..., :c])
    s, f_r = self.style(x[..., c:])
    img, f_g = self.decode(content, s)
    return img, {**f_c, **f_r, **f_g}

  def content(self, x):
    """E_S: image [B, R, R, C] -> (code [B, R/4, R/4, 2ch], feats)."""
    return self.content_enc(x)

  def style(self, x):
    """E_R: image -> (s [B, style_dim], feats ``ref<r>``)."""
    return self.style_enc(x)

  def decode(self, content, s):
    """G_S: (code, s) -> (image [B, R, R, C], feats ``gen<r>``)."""
    return self.decoder(content, s)


class _ContentEncoder(nn.Module):
  ch: int

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.ch, (3, 3), name='from_rgb')(x)
    feats = {}
    h = ResBlk(self.ch, down=True, name='down0')(h)
    feats[f'content{h.shape[1]}'] = h
    h = ResBlk(2 * self.ch, down=True, name='down1')(h)
    h = ResBlk(2 * self.ch, name='res')(h)
    feats[f'content{h.shape[1]}'] = h
    return h, feats


class _StyleEncoder(nn.Module):
  ch: int
  style_dim: int

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.ch, (3, 3), name='from_rgb')(x)
    feats = {}
    widths = (self.ch, 2 * self.ch, 2 * self.ch)
    for i, w in enumerate(widths):
      h = ResBlk(w, down=True, name=f'down{i}')(h)
      feats[f'ref{h.shape[1]}'] = h
    h = jnp.mean(_act(h), axis=(1, 2))
    return nn.Dense(self.style_dim, name='out')(h), feats


class _Decoder(nn.Module):
  ch: int
  out_ch: int

  @nn.compact
  def __call__(self, content, s):
    h = AdaResBlk(2 * self.ch, name='res')(content, s)
    feats = {f'gen{h.shape[1]}': h}
    h = AdaResBlk(2 * self.ch, up=True, name='up0')(h, s)
    feats[f'gen{h.shape[1]}'] = h
    h = AdaResBlk(self.ch, up=True, name='up1')(h, s)
    feats[f'gen{h.shape[1]}'] = h
    img = nn.Conv(self.out_ch, (1, 1), name='to_rgb')(
        _act(nn.GroupNorm(num_groups=None, group_size=1, name='norm')(h)))
    return img, feats


class MappingNet(nn.Module):
  """z -> styles [B, num_classes, style_dim] (shared trunk, class heads)."""
  z_dim: int = 16
  style_dim: int = 32
  hidden: int = 64
  num_classes: int = 10

  @nn.compact
  def __call__(self, z, train: bool = False):
    del train
    h = z
    for i in range(2):
      h = nn.relu(nn.Dense(self.hidden, name=f'shared{i}')(h))
    heads = [nn.Dense(self.style_dim, name=f'head{k}')(h)
             for k in range(self.num_classes)]
    return jnp.stack(heads, axis=1), {}


class X2IGenerator(nn.Module):
  """(z, c[, teacher feature]) -> image; c modulates every block (AdaIN).

  Attributes:
    z_dim: noise size; c_dim: condition size.
    resolution, out_ch: output image.
    ch: width (4x4 and 8x8 maps ``2 * ch``, then ``ch``).
    t_ch: width of the teacher feature map added at 4x4 (0: none; a 1x1
      conv maps it to the student's width when they differ).
  """
  z_dim: int = 16
  c_dim: int = 32
  resolution: int = 32
  out_ch: int = 1
  ch: int = 16
  t_ch: int = 0

  @nn.compact
  def generate(self, z, c, t_feat=None):
    """z [B, z_dim], c [B, c_dim], t_feat [B, 4, 4, t_ch] or None ->
    (image [B, R, R, C], feats ``gen<r>``)."""
    check_resolution(self.resolution)
    s = jnp.concatenate([z, c], -1)
    h = nn.Dense(16 * 2 * self.ch, name='fc')(s).reshape(-1, 4, 4,
                                                         2 * self.ch)
    if self.t_ch:
      # Always built, so stage 2 (no teacher) keeps stage 1's parameters.
      t = jnp.zeros((z.shape[0], 4, 4, self.t_ch)) if t_feat is None else (
          t_feat)
      h = h + nn.Conv(2 * self.ch, (1, 1), name='t_hint')(t)
    h = AdaResBlk(2 * self.ch, name='res4')(h, s)
    feats = {'gen4': h}
    r = 4
    while r < self.resolution:
      r *= 2
      width = 2 * self.ch if r <= 8 else self.ch
      h = AdaResBlk(width, up=True, name=f'up{r}')(h, s)
      feats[f'gen{r}'] = h
    img = nn.Conv(self.out_ch, (1, 1), name='to_rgb')(_act(h))
    return img, feats

  def __call__(self, zc, train: bool = False):
    """zc [B, z_dim + c_dim] -> (image, feats); no teacher feature."""
    del train
    return self.generate(zc[:, :self.z_dim], zc[:, self.z_dim:])


class ClassEmbed(nn.Module):
  """label int32 [B] -> (c [B, c_dim], {})."""
  num_classes: int = 10
  c_dim: int = 32

  @nn.compact
  def __call__(self, label, train: bool = False):
    del train
    return nn.Embed(self.num_classes, self.c_dim, name='embed')(label), {}


class ClassDiscriminator(nn.Module):
  """Residual D: image -> (logits [B, num_classes], feats ``block<r>``)."""
  resolution: int = 32
  ch: int = 16
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    check_resolution(self.resolution)
    h = nn.Conv(self.ch, (3, 3), name='from_rgb')(x)
    feats = {}
    r, width = self.resolution, self.ch
    while r > 4:
      width = min(2 * width, 4 * self.ch)
      h = ResBlk(width, down=True, name=f'block{r}')(h)
      feats[f'block{r}'] = h
      r //= 2
    h = _act(nn.Conv(width, (4, 4), padding='VALID', name='conv4')(_act(h)))
    h = h.reshape(h.shape[0], -1)
    return nn.Dense(self.num_classes, name='logits')(h), feats


def pick(logits: jax.Array, label: jax.Array) -> jax.Array:
  """The logit of each row's class: [B, K], [B] int -> [B, 1]."""
  return jnp.take_along_axis(logits, label[:, None].astype(jnp.int32), 1)


class Hints(nn.Module):
  """1x1 convs from student feature widths to the teacher's.

  Attributes:
    widths: ``((student feature name, teacher width), ...)``; a feature
      whose width already matches passes through unchanged (no params).
  """
  widths: tuple[tuple[str, int], ...] = ()

  @nn.compact
  def __call__(self, feats):
    out = {}
    for name, width in self.widths:
      f = feats[name]
      out[name] = f if f.shape[-1] == width else nn.Conv(
          width, (1, 1), name=f'hint_{name}')(f)
    return out

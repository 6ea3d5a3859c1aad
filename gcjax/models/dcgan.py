"""DCGAN generator and discriminator with a depth scale factor ``d``.

The 64x64 networks are the PyTorch DCGAN tutorial's (the pretrained face
teacher); 32x32 drops one stride-2 stage; 28x28 (MNIST-like, as in
Aguinaldo et al. 2019) starts from a 7x7 map. Every width is a multiple of
``d``, so the parameter count grows as d**2 (``dcgan_generator_params``).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from gcjax.models import layers

RESOLUTIONS = (64, 32, 28)


def _check_resolution(resolution: int) -> None:
  if resolution not in RESOLUTIONS:
    raise ValueError(f'DCGAN resolution must be one of {RESOLUTIONS}, got '
                     f'{resolution}')


def generator_widths(d: int, resolution: int) -> tuple[int, tuple[int, ...]]:
  """(first kernel size, hidden widths from the first layer on)."""
  _check_resolution(resolution)
  if resolution == 64:
    return 4, (8 * d, 4 * d, 2 * d, d)
  if resolution == 32:
    return 4, (4 * d, 2 * d, d)
  return 7, (2 * d, d)


class DCGANGenerator(nn.Module):
  """z -> image by transposed convs (no bias), batch norm + ReLU, tanh.

  64: nz -> 8d (4x4, stride 1, pad 0) -> 4d -> 2d -> d -> out_ch (4x4,
  stride 2, pad 1). 32: nz -> 4d (4x4) -> 2d -> d -> out_ch. 28: nz -> 2d
  (7x7, stride 1, pad 0) -> d -> out_ch.

  Attributes:
    d: depth scale (the tutorial's ngf).
    nz: latent size.
    out_ch: image channels.
    resolution: 64, 32 or 28.
    norm: 'batch' or 'none' (then the convs get biases).
    widths: hidden widths that replace ``generator_widths(d, resolution)``
      (one per hidden layer; a filter-pruned generator materialized by
      ``gcjax.pruning``); empty: the widths of ``d``.
  """
  d: int = 64
  nz: int = 100
  out_ch: int = 3
  resolution: int = 64
  norm: str = 'batch'
  widths: tuple[int, ...] = ()

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Generates images.

    Args:
      z: [B, nz] float32 latents.
      train: batch statistics on.

    Returns:
      (images [B, R, R, out_ch] float32 in [-1, 1], feats) with 'layer{i}'
      the post-ReLU hidden maps, i = 0 for the first (smallest) one.
    """
    layers.check_norm(self.norm, ('batch', 'none'))
    if z.ndim != 2 or z.shape[1] != self.nz:
      raise ValueError(f'DCGANGenerator expects z of shape [B, {self.nz}], '
                       f'got {z.shape}')
    k0, widths = generator_widths(self.d, self.resolution)
    if self.widths:
      if len(self.widths) != len(widths):
        raise ValueError(f'DCGANGenerator widths {self.widths}: expected '
                         f'{len(widths)} hidden widths at resolution '
                         f'{self.resolution}')
      widths = tuple(self.widths)
    bias = self.norm == 'none'
    h = z.reshape(z.shape[0], 1, 1, self.nz)
    feats = {}
    for i, w in enumerate(widths):
      if i == 0:
        h = layers.conv_transpose(w, k0, 1, 0, use_bias=bias, name='conv0')(h)
      else:
        h = layers.conv_transpose(w, 4, 2, 1, use_bias=bias,
                                  name=f'conv{i}')(h)
      h = nn.relu(layers.norm(self.norm, h, train, name=f'norm{i}'))
      feats[f'layer{i}'] = h
    h = layers.conv_transpose(self.out_ch, 4, 2, 1, use_bias=bias,
                              name=f'conv{len(widths)}')(h)
    return nn.tanh(h), feats


class DCGANDiscriminator(nn.Module):
  """image -> one logit by stride-2 convs with LeakyReLU(0.2).

  64: in -> d -> 2d -> 4d -> 8d (4x4, stride 2, pad 1) -> 1 (4x4, valid);
  32: in -> d -> 2d -> 4d -> 1 (4x4 valid); 28: in -> d -> 2d -> 1 (7x7
  valid). No norm after the first conv. Convs have biases only with
  norm='none' (the tutorial has none).

  Attributes:
    d: depth scale (the tutorial's ndf).
    resolution: 64, 32 or 28.
    norm: 'batch', 'layer' or 'none' (WGAN-GP's critic must not use batch
      norm: 'layer' or 'none').
  """
  d: int = 64
  resolution: int = 64
  norm: str = 'batch'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scores images.

    Args:
      x: [B, R, R, C] float32 in [-1, 1].
      train: batch statistics on.

    Returns:
      (logits [B, 1] float32, feats) with 'layer{i}' the post-LeakyReLU
      maps; the last one is the penultimate representation.
    """
    layers.check_norm(self.norm, ('batch', 'layer', 'none'))
    _check_resolution(self.resolution)
    if x.ndim != 4 or x.shape[1:3] != (self.resolution, self.resolution):
      raise ValueError(f'DCGANDiscriminator expects [B, {self.resolution}, '
                       f'{self.resolution}, C], got {x.shape}')
    k_last, widths = generator_widths(self.d, self.resolution)
    widths = widths[::-1]
    bias = self.norm == 'none'
    feats = {}
    h = x
    for i, w in enumerate(widths):
      h = layers.conv(w, 4, 2, 1, use_bias=bias, name=f'conv{i}')(h)
      if i > 0:
        h = layers.norm(self.norm, h, train, name=f'norm{i}')
      h = nn.leaky_relu(h, 0.2)
      feats[f'layer{i}'] = h
    h = layers.conv(1, k_last, use_bias=bias, name=f'conv{len(widths)}')(h)
    return h.reshape(h.shape[0], 1), feats


def dcgan_generator_params(d: int, nz: int = 100, out_ch: int = 3,
                           res: int = 64) -> int:
  """Parameter count of ``DCGANGenerator(d, nz, out_ch, res)`` (batch norm).

  Transposed-conv weights (no biases) plus batch-norm scale and shift:
  64: 16 (42 d^2 + 8 nz d + out_ch d) + 30 d;
  32: 16 (10 d^2 + 4 nz d + out_ch d) + 14 d;
  28: 32 d^2 + 98 nz d + 16 out_ch d + 6 d.
  """
  _check_resolution(res)
  if res == 64:
    return 16 * (42 * d * d + 8 * nz * d + out_ch * d) + 30 * d
  if res == 32:
    return 16 * (10 * d * d + 4 * nz * d + out_ch * d) + 14 * d
  return 32 * d * d + 98 * nz * d + 16 * out_ch * d + 6 * d

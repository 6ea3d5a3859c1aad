"""The pix2pix U-Net generator and OMGD's "deep" variant with residual blocks.

Level i (0 = outermost) encodes with a 4x4 stride-2 conv to
``ngf * min(2**i, 8)`` channels and decodes with a 4x4 stride-2 transposed
conv; decoder level i reads the concatenation [skip of level i + 1,
decoder output of level i + 1], exactly as pix2pix's recursive
``UnetSkipConnectionBlock`` does. At 256x256 with ``num_downs=8`` and
``ngf=64`` this is pix2pix's ``unet_256`` (54.41M parameters).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gcjax.models import layers


class BottleneckResBlock(nn.Module):
  """OMGD's U-Net residual block (``unet_deepest``), same channels in/out.

  reflect-pad 1 -> 1x1 conv (C -> 4C) -> norm -> ReLU -> 3x3 valid conv
  (4C -> 4C) -> norm -> ReLU -> 1x1 conv (4C -> C) -> norm -> ReLU ->
  reflect-pad 1 -> 3x3 valid conv (C -> C) -> norm, plus the identity. The
  first pad sits before the 1x1 conv as in OMGD (it changes the norm
  statistics, so it is kept there).
  """
  norm: str = 'batch'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c = x.shape[-1]
    bias = layers.norm_uses_bias(self.norm)
    h = layers.reflect_pad(x, 1)
    h = layers.conv(4 * c, 1, use_bias=bias, name='conv1')(h)
    h = nn.relu(layers.norm(self.norm, h, train, name='norm1'))
    h = layers.conv_valid(h, 4 * c, 3, use_bias=bias, name='conv2')
    h = nn.relu(layers.norm(self.norm, h, train, name='norm2'))
    h = layers.conv(c, 1, use_bias=bias, name='conv3')(h)
    h = nn.relu(layers.norm(self.norm, h, train, name='norm3'))
    h = layers.conv_valid(layers.reflect_pad(h, 1), c, 3, use_bias=bias,
                          name='conv4')
    h = layers.norm(self.norm, h, train, name='norm4')
    return x + h


def default_num_downs(height: int, width: int) -> int:
  """Number of levels that takes min(H, W) down to a 1x1 bottleneck."""
  n = int(math.log2(min(height, width)))
  if 2**n != min(height, width):
    raise ValueError(f'U-Net input side must be a power of two, got '
                     f'{height}x{width}')
  return n


class UNetGenerator(nn.Module):
  """pix2pix U-Net (``unet_256``) generator.

  Attributes:
    ngf: channels of the outermost level; level i has ngf * min(2**i, 8).
    out_ch: output channels.
    num_downs: number of stride-2 levels; None -> log2(min(H, W)), i.e. a
      1x1 bottleneck (8 at 256x256).
    norm: 'batch', 'instance' or 'none'. Convs before a batch norm have no
      bias (pix2pix's convention); the outermost transposed conv always has.
    dropout: dropout rate of the ``ngf * 8`` decoder levels between level 4
      and the innermost level (levels 4 .. num_downs - 2: three levels at
      256x256), applied after the decoder norm as in pix2pix. Rng 'dropout'.
    n_res: residual blocks per level (OMGD's deep teacher: ngf 16, n_res 2);
      0 is plain pix2pix.
    widths: encoder widths of levels 0 .. n-1 that replace ``ngf * min(2**i,
      8)`` (a filter-pruned U-Net materialized by ``gcjax.pruning``); empty:
      the widths of ``ngf``.
    up_widths: output widths of the decoder's transposed convs of levels
      1 .. n-1 (the outermost one has ``out_ch``); empty: the encoder widths
      of levels 0 .. n-2, as in pix2pix.
  """
  ngf: int = 64
  out_ch: int = 3
  num_downs: int | None = None
  norm: str = 'batch'
  dropout: float = 0.5
  n_res: int = 0
  widths: tuple[int, ...] = ()
  up_widths: tuple[int, ...] = ()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Translates an image.

    Args:
      x: [B, H, W, C_in] float32 in [-1, 1]; H and W divisible by
        2**num_downs.
      train: batch statistics and dropout on.

    Returns:
      (out [B, H, W, out_ch] float32 in [-1, 1], feats) where feats holds
      'down{i}' (encoder output of level i, [B, H/2**(i+1), ., ngf*min(2**i,
      8)]) and 'up{i}' (decoder output of level i before it is concatenated
      with its skip; 'up0' is the pre-tanh output).
    """
    layers.check_norm(self.norm, ('batch', 'instance', 'none'))
    if x.ndim != 4:
      raise ValueError(f'UNetGenerator expects [B, H, W, C], got {x.shape}')
    n = self.num_downs
    if n is None:
      n = default_num_downs(x.shape[1], x.shape[2])
    if n < 2:
      raise ValueError(f'num_downs must be >= 2, got {n}')
    if x.shape[1] % 2**n or x.shape[2] % 2**n:
      raise ValueError(f'input {x.shape[1]}x{x.shape[2]} not divisible by '
                       f'2**num_downs = {2**n}')
    bias = layers.norm_uses_bias(self.norm)
    ch = list(self.widths) or [self.ngf * min(2**i, 8) for i in range(n)]
    up = list(self.up_widths) or ch[:n - 1]
    if len(ch) != n or len(up) != n - 1:
      raise ValueError(f'UNetGenerator widths {self.widths} / up_widths '
                       f'{self.up_widths}: expected {n} and {n - 1} values '
                       f'for num_downs={n}')
    feats = {}

    # Encoder. skips[i] is what level i's block concatenates to its decoder
    # output: pix2pix's in-place LeakyReLU turns the block input (the
    # encoder output of level i - 1) into lrelu(.) before the concat.
    h = x
    skips = []
    for i in range(n):
      if i > 0:
        h = nn.leaky_relu(h, 0.2)
        skips.append(h)
      h = layers.conv(ch[i], 4, 2, 1, use_bias=bias, name=f'down{i}_conv')(h)
      if 0 < i < n - 1:
        h = layers.norm(self.norm, h, train, name=f'down{i}_norm')
      if i < n - 1:
        for j in range(self.n_res):
          h = BottleneckResBlock(self.norm, name=f'down{i}_res{j}')(h, train)
      feats[f'down{i}'] = h

    # Decoder, innermost first.
    for i in reversed(range(n)):
      if i == 0:
        for j in range(self.n_res):
          h = BottleneckResBlock(self.norm, name=f'up{i}_res{j}')(h, train)
      h = nn.relu(h)
      out_ch = self.out_ch if i == 0 else up[i - 1]
      h = layers.conv_transpose(out_ch, 4, 2, 1, use_bias=bias or i == 0,
                                name=f'up{i}_conv')(h)
      if i > 0:
        h = layers.norm(self.norm, h, train, name=f'up{i}_norm')
        if i < n - 1:
          for j in range(self.n_res):
            h = BottleneckResBlock(self.norm, name=f'up{i}_res{j}')(h, train)
        if 4 <= i < n - 1:
          h = layers.dropout(h, self.dropout, train)
      feats[f'up{i}'] = h
      if i > 0:
        h = jnp.concatenate([skips[i - 1], h], axis=-1)
    return jnp.tanh(h), feats

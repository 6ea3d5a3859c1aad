"""CycleGAN ResNet generators: the full one and GAN-Compression's mobile one.

Both share the layout reflect-pad 3 -> 7x7 conv -> norm -> ReLU; two
3x3 stride-2 convs (zero padding 1) -> norm -> ReLU; ``n_blocks`` residual
blocks at 4 * ngf channels; two 3x3 stride-2 transposed convs (padding 1,
output padding 1) -> norm -> ReLU; reflect-pad 3 -> 7x7 conv -> tanh. The
mobile generator (GAN-Compression, OMGD's CycleGAN student) replaces every
3x3 conv in the residual blocks by a depthwise-separable one.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from gcjax.models import layers


class ResnetBlock(nn.Module):
  """[reflect-pad 1 -> 3x3 conv -> norm -> ReLU -> dropout -> reflect-pad 1
  -> 3x3 conv -> norm] + identity."""
  norm: str = 'instance'
  affine: bool = False
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c = x.shape[-1]
    bias = layers.norm_uses_bias(self.norm)
    h = layers.conv_valid(layers.reflect_pad(x, 1), c, 3, use_bias=bias,
                          name='conv1')
    h = layers.norm(self.norm, h, train, name='norm1', affine=self.affine)
    h = layers.dropout(nn.relu(h), self.dropout, train)
    h = layers.conv_valid(layers.reflect_pad(h, 1), c, 3, use_bias=bias,
                          name='conv2')
    h = layers.norm(self.norm, h, train, name='norm2', affine=self.affine)
    return x + h


class SeparableConv(nn.Module):
  """GAN-Compression ``SeparableConv2d``: depthwise kxk (bias) -> instance
  norm (no affine) -> pointwise 1x1 (bias); no padding of its own."""
  features: int
  kernel: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = layers.DepthwiseConv(self.kernel, name='dw')(x)
    h = layers.InstanceNorm(name='norm')(h)
    return layers.conv(self.features, 1, name='pw')(h)


class MobileResnetBlock(nn.Module):
  """ResnetBlock with both 3x3 convs depthwise-separable."""
  norm: str = 'instance'
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c = x.shape[-1]
    h = SeparableConv(c, name='sep1')(layers.reflect_pad(x, 1))
    h = nn.relu(layers.norm(self.norm, h, train, name='norm1'))
    h = layers.dropout(h, self.dropout, train)
    h = SeparableConv(c, name='sep2')(layers.reflect_pad(h, 1))
    h = layers.norm(self.norm, h, train, name='norm2')
    return x + h


class ResnetGenerator(nn.Module):
  """CycleGAN ``resnet_9blocks`` generator (11.378M params at ngf 64).

  Attributes:
    ngf: stem width; the residual trunk has 4 * ngf channels.
    n_blocks: residual blocks.
    out_ch: output channels.
    norm: 'instance' (CycleGAN), 'batch' or 'none'. Convs before a batch
      norm have no bias.
    affine: instance norm with learned scale/bias (the vintagify teacher).
    dropout: rate inside residual blocks (CycleGAN uses 0).
    mobile: use depthwise-separable residual blocks (set by
      ``MobileResnetGenerator``).
  """
  ngf: int = 64
  n_blocks: int = 9
  out_ch: int = 3
  norm: str = 'instance'
  affine: bool = False
  dropout: float = 0.0
  mobile: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Translates an image.

    Args:
      x: [B, H, W, C_in] float32 in [-1, 1]; H, W divisible by 4 and > 3.
      train: batch statistics and dropout on.

    Returns:
      (out [B, H, W, out_ch] in [-1, 1], feats) with post-ReLU 'stem'
      [B, H, W, ngf], 'down{i}' [B, H/2**(i+1), ., ngf*2**(i+1)], 'block{i}'
      [B, H/4, W/4, 4*ngf] and 'up{i}' [B, H/2**(1-i), ., ngf*2**(1-i)].
    """
    layers.check_norm(self.norm, ('batch', 'instance', 'none'))
    if x.ndim != 4 or x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(f'ResnetGenerator expects [B, H, W, C] with H, W '
                       f'divisible by 4, got {x.shape}')
    bias = layers.norm_uses_bias(self.norm)

    def norm_relu(h, name):
      return nn.relu(layers.norm(self.norm, h, train, name=name,
                                 affine=self.affine))

    feats = {}
    h = layers.conv_valid(layers.reflect_pad(x, 3), self.ngf, 7,
                          use_bias=bias, name='stem_conv')
    h = feats['stem'] = norm_relu(h, 'stem_norm')
    for i in range(2):
      h = layers.conv(self.ngf * 2**(i + 1), 3, 2, 1, use_bias=bias,
                      name=f'down{i}_conv')(h)
      h = feats[f'down{i}'] = norm_relu(h, f'down{i}_norm')
    for i in range(self.n_blocks):
      if self.mobile:
        block = MobileResnetBlock(self.norm, self.dropout, name=f'block{i}')
      else:
        block = ResnetBlock(self.norm, self.affine, self.dropout,
                            name=f'block{i}')
      h = feats[f'block{i}'] = block(h, train)
    for i in range(2):
      h = layers.conv_transpose(self.ngf * 2**(1 - i), 3, 2, 1, 1,
                                use_bias=bias, name=f'up{i}_conv')(h)
      h = feats[f'up{i}'] = norm_relu(h, f'up{i}_norm')
    h = layers.conv_valid(layers.reflect_pad(h, 3), self.out_ch, 7,
                          name='out_conv')
    return nn.tanh(h), feats


class MobileResnetGenerator(ResnetGenerator):
  """GAN-Compression/OMGD ``MobileResnetGenerator`` (0.137M params at ngf 16).

  Same stem, downsampling and upsampling as ``ResnetGenerator``; residual
  blocks with depthwise-separable convs. Attributes as ``ResnetGenerator``.
  """
  ngf: int = 16
  mobile: bool = True

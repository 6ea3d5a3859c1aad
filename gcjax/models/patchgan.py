"""PatchGAN discriminators: pix2pix's N-layer (70x70) and a multi-scale stack.

OMGD's pix2pix discriminator (``multi_n_layers`` with every block shared) is
``PatchDiscriminator(ndf=128)``.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from gcjax.models import layers


class PatchDiscriminator(nn.Module):
  """pix2pix ``NLayerDiscriminator``: a map of real/fake logits.

  conv 4x4/2 (bias) -> LReLU(0.2); (n_layers - 1) x [conv 4x4/2 -> norm ->
  LReLU]; conv 4x4/1 -> norm -> LReLU; conv 4x4/1 -> 1 channel (bias).
  Widths ndf * min(2**i, 8). With n_layers=3 each logit sees 70x70 pixels.

  Attributes:
    ndf: width of the first layer.
    n_layers: number of stride-2 layers.
    norm: 'batch', 'instance', 'layer' or 'none'.
  """
  ndf: int = 64
  n_layers: int = 3
  norm: str = 'batch'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scores image patches.

    Args:
      x: [B, H, W, C] float32 (for pix2pix, source and image concatenated).
      train: batch statistics on.

    Returns:
      (logits [B, H', W', 1] float32 (H' = H/2**n_layers - 2), feats) with
      feats 'layer{i}' the post-LeakyReLU activations.
    """
    layers.check_norm(self.norm)
    bias = layers.norm_uses_bias(self.norm)
    feats = {}
    h = layers.conv(self.ndf, 4, 2, 1, name='conv0')(x)
    h = nn.leaky_relu(h, 0.2)
    feats['layer0'] = h
    for i in range(1, self.n_layers + 1):
      stride = 2 if i < self.n_layers else 1
      h = layers.conv(self.ndf * min(2**i, 8), 4, stride, 1, use_bias=bias,
                      name=f'conv{i}')(h)
      h = layers.norm(self.norm, h, train, name=f'norm{i}')
      h = nn.leaky_relu(h, 0.2)
      feats[f'layer{i}'] = h
    h = layers.conv(1, 4, 1, 1, name=f'conv{self.n_layers + 1}')(h)
    return h, feats


class MultiScaleDiscriminator(nn.Module):
  """``num_D`` PatchGANs on the image downsampled by 2 between scales.

  Downsampling is pix2pixHD's ``AvgPool2d(3, 2, padding=1,
  count_include_pad=False)``.

  Attributes:
    num_D: number of scales.
    ndf, n_layers, norm: as ``PatchDiscriminator``.
  """
  num_D: int = 2
  ndf: int = 64
  n_layers: int = 3
  norm: str = 'batch'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False
               ) -> tuple[list[jax.Array], dict[str, jax.Array]]:
    """Scores image patches at every scale.

    Args:
      x: [B, H, W, C] float32.
      train: batch statistics on.

    Returns:
      (list of num_D logit maps, finest first, feats 'D{d}/layer{i}').
    """
    outs, feats = [], {}
    for d in range(self.num_D):
      if d > 0:
        x = layers.avg_pool_3x3_s2(x)
      out, f = PatchDiscriminator(self.ndf, self.n_layers, self.norm,
                                  name=f'D{d}')(x, train)
      outs.append(out)
      feats.update({f'D{d}/{k}': v for k, v in f.items()})
    return outs, feats

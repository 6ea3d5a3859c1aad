"""The VEM energy network E(t, s): a small conv net over a pair of images.

Design (after the VEM authors' public tutorial code, Kang et al. 2022): both
images are average-pooled by ``pool``, concatenated on channels, lifted to
``ch`` channels by a conv, passed through spectral-normalized residual blocks
that halve the resolution while it is above 1x1, averaged over space and
mapped to one scalar per example. The net runs K times per train step inside
Langevin dynamics, so it is kept narrow and shallow; the number of blocks
follows the input size (log2 of the pooled side, capped at ``n_blocks``), so
it works for 16x16 up to 256x256 inputs.

Spectral normalization uses ``flax.linen.SpectralNorm``: its power-iteration
vectors live in the ``'batch_stats'`` collection and are only updated when
``train=True`` (apply with ``mutable=['batch_stats']``); initialization
needs the ``'params'`` rng, which ``module.init(key, ...)`` provides.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def n_halvings(size: int) -> int:
  """Number of 2x average-pools (floor) that bring ``size`` down to 1."""
  n = 0
  while size > 1:
    size //= 2
    n += 1
  return n


class _SNConv(nn.Module):
  """Conv, spectral-normalized when ``spectral_norm`` is set."""
  features: int
  kernel: int
  spectral_norm: bool

  @nn.compact
  def __call__(self, x, train: bool):
    conv = nn.Conv(self.features, (self.kernel, self.kernel), padding='SAME')
    if self.spectral_norm:
      return nn.SpectralNorm(conv)(x, update_stats=train)
    return conv(x)


class _ResBlock(nn.Module):
  """Pre-activation residual block with optional 2x average pooling."""
  ch: int
  down: bool
  spectral_norm: bool

  @nn.compact
  def __call__(self, x, train: bool):
    h = _SNConv(self.ch, 3, self.spectral_norm, name='conv1')(nn.swish(x),
                                                              train)
    h = _SNConv(self.ch, 3, self.spectral_norm, name='conv2')(nn.swish(h),
                                                              train)
    skip = x
    if x.shape[-1] != self.ch:
      skip = _SNConv(self.ch, 1, self.spectral_norm, name='skip')(x, train)
    out = h + skip
    if self.down:
      out = nn.avg_pool(out, (2, 2), strides=(2, 2), padding='VALID')
    return out


class EnergyNet(nn.Module):
  """Energy E(t, s) of a teacher/target image t given a student image s.

  Attributes:
    ch: channel width of every block.
    n_blocks: the most residual blocks; the net uses
      ``min(n_blocks, n_halvings(pooled side))`` blocks (at least 1), each
      halving the resolution while it is above 1.
    pool: average-pool factor applied to t and s first (1 = none).
    spectral_norm: spectral-normalize every conv and the output layer.
  """
  ch: int = 64
  n_blocks: int = 7
  pool: int = 2
  spectral_norm: bool = True

  @nn.compact
  def __call__(self, t: jax.Array, s: jax.Array, train: bool
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Computes per-example energies.

    Args:
      t: [B, H, W, C] float32 in [-1, 1], the teacher output (or target).
      s: [B, H, W, C'] float32 in [-1, 1], the student output (same B, H, W).
      train: update the spectral-norm power-iteration vectors.

    Returns:
      ``(energy, feats)``: energy [B] float32; feats maps ``'stem'`` and
      ``'block{i}'`` to [B, h, w, ch] activations and ``'pooled'`` to [B, ch].
    """
    if t.ndim != 4 or s.ndim != 4 or t.shape[:3] != s.shape[:3]:
      raise ValueError(
          f'EnergyNet: t and s must be [B, H, W, C] with equal B, H, W; got '
          f't {t.shape} and s {s.shape}')
    if self.pool < 1 or self.n_blocks < 1:
      raise ValueError(f'EnergyNet: pool and n_blocks must be >= 1, got '
                       f'pool={self.pool}, n_blocks={self.n_blocks}')
    x = jnp.concatenate([t, s], axis=-1)
    if self.pool > 1 and min(x.shape[1:3]) >= self.pool:
      x = nn.avg_pool(x, (self.pool, self.pool), strides=(self.pool,) * 2,
                      padding='VALID')
    feats = {}
    x = _SNConv(self.ch, 3, self.spectral_norm, name='stem')(x, train)
    feats['stem'] = x
    side = min(x.shape[1:3])
    n = max(1, min(self.n_blocks, n_halvings(side)))
    for i in range(n):
      down = min(x.shape[1:3]) > 1
      x = _ResBlock(self.ch, down, self.spectral_norm, name=f'block{i}')(
          x, train)
      feats[f'block{i}'] = x
    h = nn.swish(jnp.mean(x, axis=(1, 2)))
    feats['pooled'] = h
    dense = nn.Dense(1, name='out')
    if self.spectral_norm:
      e = nn.SpectralNorm(dense)(h, update_stats=train)
    else:
      e = dense(h)
    return e[:, 0], feats

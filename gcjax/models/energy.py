"""The VEM energy networks E(t, s): small conv nets over a pair of images.

``VEMEnergyNet`` (below) is the authors' net and the ``vem`` default;
``EnergyNet`` is gcjax's earlier compact net (``mi.ebm_arch='compact'``).

``EnergyNet`` design (loosely after the authors' tutorial code): both
images are average-pooled by ``pool``, concatenated on channels, lifted to
``ch`` channels by a conv, passed through spectral-normalized residual blocks
that halve the resolution while it is above 1x1, averaged over space and
mapped to one scalar per example. The net runs K times per train step inside
Langevin dynamics, so it is kept narrow and shallow; the number of blocks
follows the input size (log2 of the pooled side, capped at ``n_blocks``), so
it works for 16x16 up to 256x256 inputs.

``EnergyNet`` uses ``flax.linen.SpectralNorm``, ``VEMEnergyNet`` its own
``SNConv`` (it needs the lower-bounded form); either way the power-iteration
vectors live in the ``'batch_stats'`` collection and are only updated when
``train=True`` (apply with ``mutable=['batch_stats']``); initialization
needs the ``'params'`` rng, which ``module.init(key, ...)`` provides.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gcjax.models import layers


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
    lo = (self.kernel - 1) // 2   # 'SAME', explicit for tap_grad_conv
    pad = ((lo, self.kernel - 1 - lo),) * 2
    conv = nn.Conv(self.features, (self.kernel, self.kernel), padding=pad,
                   conv_general_dilated=layers.tap_grad_conv)
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


# --------------------------------------------------------------------------
# The VEM authors' energy net (their public tutorial code, as a JAX module).


def _l2n(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / (jnp.sqrt(jnp.sum(jnp.square(x))) + eps)


def power_iteration(mat: jax.Array, u: jax.Array, n: int
                    ) -> tuple[jax.Array, jax.Array]:
  """``n`` power-iteration steps for the top singular pair of ``mat``.

  Args:
    mat: [M, N] float32 (a kernel reshaped to [fan_in, out]).
    u: [N] float32 start vector.
    n: number of steps (>= 0).

  Returns:
    ``(u, v)``: unit [N] and [M] vectors, ``v = normalize(mat @ u)``.
  """
  for _ in range(n):
    u = _l2n(mat.T @ _l2n(mat @ u))
  return u, _l2n(mat @ u)


def spectral_scale(mat: jax.Array, u: jax.Array, lower_bound: bool
                   ) -> tuple[jax.Array, jax.Array]:
  """The factor a spectral-normalized kernel is multiplied by, and sigma.

  ``sigma = v^T mat u`` with the (stop-gradient'ed) power-iteration vectors.
  Plain SN divides by sigma; the lower-bounded form multiplies by
  ``min(sigma, 1) / sigma``, i.e. it only ever scales a kernel down (the
  authors' residual second convs, initialized tiny, stay tiny).

  Returns:
    ``(scale, sigma)``: scalars float32.
  """
  u = jax.lax.stop_gradient(u)
  v = jax.lax.stop_gradient(_l2n(mat @ u))
  sigma = v @ mat @ u
  if lower_bound:
    return jnp.minimum(sigma, 1.0) / jnp.maximum(sigma, 1e-12), sigma
  return 1.0 / jnp.maximum(sigma, 1e-12), sigma


class SNConv(nn.Module):
  """Spectral-normalized 3x3 ('SAME') conv, or a dense layer (kernel=0).

  The power-iteration vector ``u`` lives in ``'batch_stats'`` and advances
  one step per call with ``train=True`` (like ``torch.nn.utils.
  spectral_norm``); ``init`` runs a few steps so the first sigma is close.

  Attributes:
    features: output channels.
    kernel: spatial size (0: a dense layer over the last axis).
    lower_bound: scale by min(sigma, 1) / sigma instead of 1 / sigma.
    init_std: std of the N(0, std) kernel init (bias starts at 0).
  """
  features: int
  kernel: int = 3
  lower_bound: bool = False
  init_std: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    cin = x.shape[-1]
    shape = ((self.kernel, self.kernel, cin, self.features) if self.kernel
             else (cin, self.features))
    w = self.param('kernel', nn.initializers.normal(self.init_std), shape)
    b = self.param('bias', nn.initializers.zeros, (self.features,))
    mat = w.reshape(-1, self.features)
    u = self.variable(
        'batch_stats', 'u', lambda: power_iteration(
            mat, _l2n(jax.random.normal(self.make_rng('params'),
                                        (self.features,))), 5)[0])
    if train and not self.is_initializing():
      u.value = power_iteration(jax.lax.stop_gradient(mat), u.value, 1)[0]
    scale, _ = spectral_scale(mat, u.value, self.lower_bound)
    w = w * scale
    if not self.kernel:
      return x @ w + b
    lo = (self.kernel - 1) // 2   # 'SAME'; tap_grad_conv's input gradient
    y = layers.tap_grad_conv(     # is ~10x faster in the Langevin loop
        x, w, (1, 1), ((lo, self.kernel - 1 - lo),) * 2,
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + b


def _lrelu(x):
  return nn.leaky_relu(x, 0.2)


class VEMBlock(nn.Module):
  """Residual block: x + conv(lrelu(conv(x))) -> 2x2 avg-pool -> lrelu.

  The second conv is lower-bounded SN with a N(0, 1e-10) kernel, so the
  block starts as its shortcut (identity, or an SN conv where the width
  changes).
  """
  out_ch: int
  down: bool

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    h = _lrelu(SNConv(c, name='conv1')(x, train))
    h = SNConv(self.out_ch, lower_bound=True, init_std=1e-10,
               name='conv2')(h, train)
    skip = x if c == self.out_ch else SNConv(self.out_ch, name='skip')(
        x, train)
    out = h + skip
    if self.down:
      out = nn.avg_pool(out, (2, 2), strides=(2, 2), padding='VALID')
    return _lrelu(out)


class VEMEnergyNet(nn.Module):
  """The energy net of the VEM authors' public tutorial code.

  t and s are each avg-pooled (3x3, stride 2, padding 1), concatenated and
  lifted to ``ch // 2`` channels by an SN conv + LeakyReLU(0.2); then
  ``n_blocks`` ``VEMBlock``s with widths ch/2 -> ch -> 2ch, then constant,
  each halving the map while it is larger than 1x1; head: ReLU -> spatial
  mean -> SN linear to one scalar. Kernels start N(0, 1) before
  normalization. No batch statistics mix examples.

  Attributes:
    ch: the base width C0 (authors: 64 for Pix2Pix, 16 for CycleGAN).
    n_blocks: number of residual blocks (authors: 7).
  """
  ch: int = 64
  n_blocks: int = 7

  @nn.compact
  def __call__(self, t: jax.Array, s: jax.Array, train: bool
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-example energies.

    Args:
      t: [B, H, W, C] float32 in [-1, 1] (teacher output or target).
      s: [B, H, W, C'] float32 in [-1, 1] (student output, same B, H, W).
      train: advance the spectral-norm power iterations.

    Returns:
      ``(energy [B] float32, feats)``: feats maps ``'stem'``,
      ``'block{i}'`` to [B, h, w, width] maps and ``'pooled'`` to [B, 2ch].
    """
    if t.ndim != 4 or s.ndim != 4 or t.shape[:3] != s.shape[:3]:
      raise ValueError(
          f'VEMEnergyNet: t and s must be [B, H, W, C] with equal B, H, W; '
          f'got t {t.shape} and s {s.shape}')
    if self.ch < 2 or self.n_blocks < 1:
      raise ValueError(f'VEMEnergyNet: need ch >= 2 and n_blocks >= 1, got '
                       f'ch={self.ch}, n_blocks={self.n_blocks}')
    pool = lambda x: nn.avg_pool(x, (3, 3), strides=(2, 2),
                                 padding=((1, 1), (1, 1)))
    x = jnp.concatenate([pool(t), pool(s)], axis=-1)
    x = _lrelu(SNConv(self.ch // 2, name='stem')(x, train))
    feats = {'stem': x}
    for i in range(self.n_blocks):
      width = self.ch if i == 0 else 2 * self.ch
      x = VEMBlock(width, min(x.shape[1:3]) > 1, name=f'block{i}')(x, train)
      feats[f'block{i}'] = x
    h = jnp.mean(nn.relu(x), axis=(1, 2))
    feats['pooled'] = h
    e = SNConv(1, kernel=0, name='out')(h, train)
    return e[:, 0], feats


def energy_net(arch: str, *, ch: int, n_blocks: int, pool: int = 2,
               spectral_norm: bool = True) -> nn.Module:
  """The energy net by name: ``'vem'`` (the authors') or ``'compact'``
  (gcjax's earlier net, ``EnergyNet``; ``pool`` and ``spectral_norm`` are
  its fields only)."""
  if arch == 'vem':
    return VEMEnergyNet(ch=ch, n_blocks=n_blocks)
  if arch == 'compact':
    return EnergyNet(ch=ch, n_blocks=n_blocks, pool=pool,
                     spectral_norm=spectral_norm)
  raise ValueError(f"energy net arch must be 'vem' or 'compact', got "
                   f'{arch!r}')


class PairEnergy(nn.Module):
  """An energy net as a one-input network, plus the sampler it trained with.

  ``finalize`` hands it out (``Method.finalize``'s ``'ebm'``) so that
  evaluation probes can read the critic: the input is ``concat(t, s)`` on
  channels, the first ``t_channels`` being t. The Langevin fields are not
  used by ``__call__``; they record the chain the critic was trained
  against (``gcjax.langevin.langevin`` keywords).
  """
  energy: nn.Module
  t_channels: int
  n_steps: int = 10
  step_size: float = 100.0
  noise_std: float = 0.005
  clip: tuple | None = (-1.0, 1.0)
  clip_at: str = 'end'

  def __call__(self, x: jax.Array, train: bool = False):
    """Args: x [B, H, W, C_t + C_s]. Returns (energy [B], feats)."""
    return self.energy(x[..., :self.t_channels], x[..., self.t_channels:],
                       train)

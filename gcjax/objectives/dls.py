"""Dynamic latent scale (Cho & Krzyzak 2022, Algorithm 1), pure functions.

The discriminator's encoder head predicts z' for fake images G(z * s). The
element-wise variance v of z' is tracked across steps (z' has mean ~0, so
the batch mean of z'^2 is its per-step variance estimate) and gives the
latent scale

    s = sqrt(d_z) * sqrt(v) / ||sqrt(v)||_2      (so sum(s^2) = d_z)

with no epsilon. Elements the generator does not express get small v,
hence small s: the entropy of z * s shrinks until the generator keeps all
the information it is given, and the encoder loss
mean((z' - z)^2 * s^2) can converge.

Trackers follow optax (a pure ``init``/``update`` pair, the state its own
pytree): :func:`ring_buffer` (the author's: the mean of the last ``size``
per-step batch means, the buffer starting at ones so s = 1 at first) and
:func:`ema` (v <- decay * v + (1 - decay) * mean z'^2, starting at ones).
The caller computes s from the state *before* its update and never
differentiates through it.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp

TRACKERS = ('ring', 'ema')


@flax.struct.dataclass
class RingState:
  """The last ``size`` per-step batch means of z'^2 and the write count."""
  buffer: jax.Array     # [size, d_z] float32
  count: jax.Array      # [] int32


@flax.struct.dataclass
class EmaState:
  """The exponential moving average of the per-step batch mean of z'^2."""
  v: jax.Array          # [d_z] float32


class Tracker(NamedTuple):
  """``init(d_z) -> state``, ``update(state, zsq) -> state``,
  ``variance(state) -> v [d_z]``; ``zsq`` is a [d_z] batch mean of z'^2."""
  init: Callable
  update: Callable
  variance: Callable


def ring_buffer(size: int = 512) -> Tracker:
  """Mean of the last ``size`` per-step batch means (starts at ones)."""
  if size < 1:
    raise ValueError(f'DLS ring buffer size must be >= 1, got {size}')

  def init(d_z: int) -> RingState:
    return RingState(buffer=jnp.ones((size, d_z), jnp.float32),
                     count=jnp.zeros((), jnp.int32))

  def update(state: RingState, zsq: jax.Array) -> RingState:
    row = state.count % size
    return RingState(buffer=state.buffer.at[row].set(zsq),
                     count=state.count + 1)

  def variance(state: RingState) -> jax.Array:
    return jnp.mean(state.buffer, axis=0)

  return Tracker(init, update, variance)


def ema(decay: float = 0.999) -> Tracker:
  """Exponential moving average of the per-step batch means (starts at 1)."""
  if not 0.0 <= decay < 1.0:
    raise ValueError(f'DLS EMA decay must be in [0, 1), got {decay}')

  def init(d_z: int) -> EmaState:
    return EmaState(v=jnp.ones((d_z,), jnp.float32))

  def update(state: EmaState, zsq: jax.Array) -> EmaState:
    return EmaState(v=decay * state.v + (1.0 - decay) * zsq)

  def variance(state: EmaState) -> jax.Array:
    return state.v

  return Tracker(init, update, variance)


def make_tracker(kind: str, size: int, decay: float) -> Tracker:
  """The tracker ``kind`` ('ring' | 'ema')."""
  if kind == 'ring':
    return ring_buffer(size)
  if kind == 'ema':
    return ema(decay)
  raise ValueError(f'DLS tracker must be one of {TRACKERS}, got {kind!r}')


def latent_scale(v: jax.Array) -> jax.Array:
  """s = sqrt(d_z) sqrt(v) / ||sqrt(v)||_2 (no epsilon, no gradient).

  Args:
    v: [d_z] float32 non-negative element-wise variances.

  Returns:
    [d_z] float32 with sum(s^2) = d_z; all ones when v is uniform.
  """
  r = jnp.sqrt(jax.lax.stop_gradient(v))
  return math.sqrt(v.shape[-1]) * r / jnp.linalg.norm(r)


def second_moment(z_pred: jax.Array) -> jax.Array:
  """Per-step variance estimate: batch mean of z'^2, [B, d_z] -> [d_z]."""
  return jnp.mean(jnp.square(jax.lax.stop_gradient(z_pred)), axis=0)


def encoder_loss(z_pred: jax.Array, z: jax.Array, s: jax.Array,
                 mask: jax.Array | None = None) -> jax.Array:
  """L_enc = mean over dims (and rows) of (z' - z)^2 * s^2.

  Args:
    z_pred: [B, d_z] the encoder's prediction of the unscaled z.
    z: [B, d_z] the unscaled latents the fakes were made from.
    s: [d_z] the latent scale (treated as a constant).
    mask: optional [B] weights (1: the row counts; e.g. rows made without
      style mixing); the mean is over the counted rows.

  Returns:
    Scalar float32.
  """
  per_row = jnp.mean(jnp.square(z_pred - z)
                     * jnp.square(jax.lax.stop_gradient(s)), axis=-1)
  if mask is None:
    return jnp.mean(per_row)
  return jnp.sum(per_row * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def entropy(s: jax.Array) -> jax.Array:
  """Differential entropy of z * s for z ~ N(0, I): sum log(s sqrt(2 pi e))."""
  return jnp.sum(jnp.log(s * math.sqrt(2.0 * math.pi * math.e)))

"""KDIT's distillation losses (Wang et al. 2022, Eqs. 1-3, 6, 7), pure.

Every norm is an L1 averaged over elements (PyTorch's ``L1Loss``), so a
weight means the same at every feature size. Feature pairs are
``(teacher feature name, student feature name, weight)``; student features
are already mapped to the teacher's width by the hint layers.

* :func:`feature_l1`: sum_l w_l |T_l - S_l| (Eqs. 1 and 2, and the feature
  part of Eqs. 3 and 6).
* :func:`output_l1`: beta |y - y_hat| (the image part of Eqs. 3 and 6).
* :func:`semantic_diversity`: Eq. 7, -|G(z, c_x) - G(z, c_y)|, made
  bounded: each example's mean absolute difference is clipped at
  ``margin`` before the batch mean, so the loss lies in [-margin, 0] and
  stops pushing once two outputs differ by ``margin`` (DSGAN's clipped
  diversity term). The paper's unbounded form rewards blowing outputs
  apart without limit.
* :func:`width_weight`: the appendix's alpha_l = beta = 0.1 for features
  narrower than 128 channels, else 0.01.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

Pairs = Sequence[tuple[str, str, float]]


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean absolute difference (a scalar)."""
  if a.shape != b.shape:
    raise ValueError(f'L1 between shapes {a.shape} and {b.shape}')
  return jnp.mean(jnp.abs(a - b))


def feature_l1(teacher: dict, student: dict, pairs: Pairs) -> jax.Array:
  """sum over pairs (t, s, w) of w * L1(teacher[t], student[s])."""
  total = jnp.zeros((), jnp.float32)
  for t, s, w in pairs:
    total = total + w * l1(jax.lax.stop_gradient(teacher[t]), student[s])
  return total


def output_l1(target: jax.Array, pred: jax.Array, beta: float) -> jax.Array:
  return beta * l1(jax.lax.stop_gradient(target), pred)


def semantic_diversity(a: jax.Array, b: jax.Array,
                       margin: float) -> jax.Array:
  """Bounded Eq. 7: -mean_i min(mean|a_i - b_i|, margin), in [-margin, 0].

  Args:
    a, b: [B, ...] student outputs for the same noise and two conditions.
    margin: > 0, where the reward for more difference stops.
  """
  if margin <= 0:
    raise ValueError(f'semantic diversity margin must be > 0, got {margin}')
  d = jnp.mean(jnp.abs(a - b).reshape(a.shape[0], -1), axis=1)
  return -jnp.mean(jnp.minimum(d, margin))


def width_weight(width: int, small: float = 0.1, large: float = 0.01,
                 threshold: int = 128) -> float:
  """The appendix's per-feature weight: ``small`` below ``threshold``
  channels, ``large`` otherwise."""
  return small if width < threshold else large

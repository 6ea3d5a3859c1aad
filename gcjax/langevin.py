"""Short-run Langevin sampling from an energy function (pure, jit-friendly).

The update is the one VEM (Kang et al., 2022, eq. 7) runs for K steps from the
student output, with the step size and the noise scale as separate knobs:

  t_k = t_{k-1} - step_size * grad_t E(t_{k-1}) + noise_std * eps_k

clipped to the data range after every step (``clip_at='step'``) or once
after the last one (``clip_at='end'``, the VEM authors' code).

where ``eps_k ~ N(0, I)`` is drawn with ``fold_in(key, k)``. The loop is a
``jax.lax.fori_loop`` so a jitted train step compiles it once.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def _per_example_norm(x: jax.Array) -> jax.Array:
  """L2 norm over all non-batch axes: [B, ...] -> [B]."""
  return jnp.sqrt(jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=-1))


def langevin(energy_fn: Callable[[jax.Array], jax.Array],
             x0: jax.Array,
             key: jax.Array,
             *,
             n_steps: int,
             step_size: float | jax.Array,
             noise_std: float | jax.Array,
             clip: tuple[float, float] | None = (-1.0, 1.0),
             grad_clip: float | None = None,
             clip_at: str = 'step',
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Runs ``n_steps`` of Langevin dynamics from ``x0``.

  Args:
    energy_fn: maps ``x`` [B, ...] to per-example energies [B]; the sampler
      follows the gradient of their sum, so examples move independently as
      long as the energy of one example does not read another.
    x0: [B, ...] float start points (e.g. the student output). No gradient
      flows back into it.
    key: PRNG key; step ``i`` uses ``fold_in(key, i)``.
    n_steps: number of steps K (static Python int; 0 returns ``x0``).
    step_size: eta, the multiplier of the energy gradient.
    noise_std: sigma, the standard deviation of the Gaussian noise per step.
    clip: ``(lo, hi)`` data range the chain is clipped to, or None for no
      clipping.
    grad_clip: if set, each example's energy gradient is rescaled so that its
      L2 norm is at most this value (a guard against blow-ups when the
      energy net is young).
    clip_at: ``'step'``: clip after every step; ``'end'``: only once after
      the last step.

  Returns:
    ``(samples, stats)``: samples [B, ...] with ``stop_gradient`` applied, and
    scalar float32 stats averaged over steps and examples: ``step_norm`` (L2
    norm of the gradient move ``step_size * grad``) and ``grad_norm`` (L2
    norm of the gradient, after ``grad_clip``).
  """
  if not isinstance(n_steps, int) or n_steps < 0:
    raise ValueError(f'langevin: n_steps must be an int >= 0, got {n_steps!r}')
  if x0.ndim < 1:
    raise ValueError(f'langevin: x0 needs a batch axis, got shape {x0.shape}')
  if grad_clip is not None and not grad_clip > 0:
    raise ValueError(f'langevin: grad_clip must be > 0 or None, got '
                     f'{grad_clip!r}')
  if clip_at not in ('step', 'end'):
    raise ValueError(f"langevin: clip_at must be 'step' or 'end', got "
                     f'{clip_at!r}')
  if clip is not None and not clip[0] < clip[1]:
    raise ValueError(f'langevin: clip must be (lo, hi) with lo < hi, got '
                     f'{clip!r}')
  x0 = jax.lax.stop_gradient(x0)
  grad_e = jax.grad(lambda x: jnp.sum(energy_fn(x)))
  zero = jnp.zeros((), jnp.float32)

  def body(i, carry):
    x, step_acc, grad_acc = carry
    g = grad_e(x)
    g_norm = _per_example_norm(g)
    if grad_clip is not None:
      scale = jnp.minimum(1.0, grad_clip / jnp.maximum(g_norm, 1e-12))
      g = g * scale.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype)
      g_norm = g_norm * scale
    move = step_size * g
    eps = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
    x = x - move + noise_std * eps
    if clip is not None and clip_at == 'step':
      x = jnp.clip(x, clip[0], clip[1])
    step_acc = step_acc + jnp.mean(_per_example_norm(move)).astype(jnp.float32)
    grad_acc = grad_acc + jnp.mean(g_norm).astype(jnp.float32)
    return x, step_acc, grad_acc

  x, step_acc, grad_acc = jax.lax.fori_loop(
      0, n_steps, body, (x0, zero, zero))
  if clip is not None and clip_at == 'end':
    x = jnp.clip(x, clip[0], clip[1])
  denom = max(n_steps, 1)
  stats = dict(step_norm=step_acc / denom, grad_norm=grad_acc / denom)
  return jax.lax.stop_gradient(x), stats

"""Adversarial losses on discriminator logits (pure functions).

Kinds:
  * ``'hinge'``: D: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G: -E[D(G(z))].
  * ``'lsgan'``: D: E[(D(x) - 1)^2] + E[D(G(z))^2]; G: E[(D(G(z)) - 1)^2].
  * ``'vanilla'``: the original GAN D loss, BCE-with-logits against 1 for real
    and 0 for fake, E[softplus(-D(x))] + E[softplus(D(G(z)))], and the
    non-saturating G loss E[softplus(-D(G(z)))] (pix2pix's ``vanilla``).
  * ``'wgan'``: D: E[D(G(z))] - E[D(x)]; G: -E[D(G(z))] (add a
    ``gradient_penalty`` for WGAN-GP).

The D losses return the *sum* of the real and the fake terms; pix2pix and
OMGD multiply their D loss by 0.5, which the caller applies. Logits may be an
array of any shape (patch logits are averaged) or a list/tuple of arrays
(multi-scale discriminators: the per-scale losses are summed).
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp

Logits = Union[jax.Array, Sequence[jax.Array]]
KINDS = ('hinge', 'lsgan', 'vanilla', 'wgan')


def _check(kind: str) -> None:
  if kind not in KINDS:
    raise ValueError(f'adversarial loss kind must be one of {KINDS}, got '
                     f'{kind!r}')


def _scales(logits: Logits) -> list[jax.Array]:
  if isinstance(logits, (list, tuple)):
    if not logits:
      raise ValueError('adversarial loss: empty list of logits')
    return list(logits)
  return [logits]


def _d_one(real: jax.Array, fake: jax.Array, kind: str) -> jax.Array:
  if kind == 'hinge':
    return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))
  if kind == 'lsgan':
    return jnp.mean(jnp.square(real - 1.0)) + jnp.mean(jnp.square(fake))
  if kind == 'vanilla':
    return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
  return jnp.mean(fake) - jnp.mean(real)  # wgan


def _g_one(fake: jax.Array, kind: str) -> jax.Array:
  if kind in ('hinge', 'wgan'):
    return -jnp.mean(fake)
  if kind == 'lsgan':
    return jnp.mean(jnp.square(fake - 1.0))
  return jnp.mean(jax.nn.softplus(-fake))  # vanilla, non-saturating


def gan_d_loss(real: Logits, fake: Logits, kind: str) -> jax.Array:
  """Discriminator loss.

  Args:
    real: logits of D on real data, [B, ...] float (or a list of such).
    fake: logits of D on generated data (stop-gradient'ed by the caller),
      same structure as ``real``.
    kind: 'hinge' | 'lsgan' | 'vanilla' | 'wgan'.

  Returns:
    Scalar float32: real term + fake term (summed over scales).
  """
  _check(kind)
  real, fake = _scales(real), _scales(fake)
  if len(real) != len(fake):
    raise ValueError(f'gan_d_loss: {len(real)} real vs {len(fake)} fake '
                     'logit scales')
  return sum(_d_one(r, f, kind) for r, f in zip(real, fake))


def gan_g_loss(fake: Logits, kind: str) -> jax.Array:
  """Generator loss on D's logits for generated data.

  Args:
    fake: [B, ...] float logits (or a list of such).
    kind: 'hinge' | 'lsgan' | 'vanilla' | 'wgan'.

  Returns:
    Scalar float32 (summed over scales).
  """
  _check(kind)
  return sum(_g_one(f, kind) for f in _scales(fake))


def gradient_penalty(d_fn: Callable[[jax.Array], jax.Array],
                     real: jax.Array, fake: jax.Array,
                     key: jax.Array) -> jax.Array:
  """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2] (Gulrajani et al.).

  ``x_hat = a * real + (1 - a) * fake`` with one ``a ~ U[0, 1]`` per example.

  Args:
    d_fn: maps [B, ...] inputs to logits of any shape [B, ...]; the gradient
      of the sum of its logits is taken per example (D must not mix
      examples, i.e. no batch norm).
    real: [B, ...] float real inputs.
    fake: [B, ...] float generated inputs, same shape.
    key: PRNG key for the interpolation weights.

  Returns:
    Scalar float32 penalty (multiply by lambda, 10 in WGAN-GP).
  """
  if real.shape != fake.shape:
    raise ValueError(f'gradient_penalty: real {real.shape} and fake '
                     f'{fake.shape} shapes differ')
  a = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1),
                         real.dtype)
  x_hat = a * real + (1.0 - a) * fake
  g = jax.grad(lambda x: jnp.sum(d_fn(x)))(x_hat)
  norm = jnp.sqrt(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=-1)
                  + 1e-12)
  return jnp.mean(jnp.square(norm - 1.0))


def r1_penalty(d_fn: Callable[[jax.Array], jax.Array],
               real: jax.Array) -> jax.Array:
  """R1 (Mescheder et al. 2018): E_x[||grad_x D(x)||^2] on real data.

  The squared norm is summed over each example's elements and averaged over
  the batch; StyleGAN2 weights it by gamma / 2 (DLSGAN: 10, i.e. gamma 20).

  Args:
    d_fn: maps [B, ...] inputs to logits [B, ...]; the gradient of the sum
      of its logits is taken per example (D must not mix examples).
    real: [B, ...] float real inputs.

  Returns:
    Scalar float32.
  """
  g = jax.grad(lambda x: jnp.sum(d_fn(x)))(real)
  return jnp.mean(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=-1))

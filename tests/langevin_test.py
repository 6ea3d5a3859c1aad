"""Tests for gcjax.langevin."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from gcjax.langevin import langevin


class FastPRNGTestCase(parameterized.TestCase):
  """Runs each test with the non-partitionable threefry.

  NOTE: with jax 0.10's default partitionable threefry, XLA:CPU spends tens
  of seconds compiling every random initializer here; the old lowering gives
  other random bits but the same semantics, and is ~50x cheaper to compile.
  """

  def setUp(self):
    super().setUp()
    self.enter_context(jax.threefry_partitionable(False))


def _quadratic(tau):
  return lambda x: jnp.sum(jnp.square(x), axis=-1) / (2.0 * tau**2)


class LangevinTest(FastPRNGTestCase):

  def test_quadratic_stationary_variance(self):
    # x <- x (1 - eta / tau^2) + sigma eps has stationary variance
    # sigma^2 / (1 - (1 - eta / tau^2)^2).
    tau, eta, sigma = 1.5, 0.3, 0.2
    a = 1.0 - eta / tau**2
    expected = sigma**2 / (1.0 - a**2)
    x0 = jnp.zeros((4096, 8))
    x, stats = langevin(_quadratic(tau), x0, jax.random.key(0), n_steps=200,
                        step_size=eta, noise_std=sigma, clip=None)
    np.testing.assert_allclose(np.var(np.asarray(x)), expected, rtol=0.03)
    self.assertAlmostEqual(float(np.mean(np.asarray(x))), 0.0, delta=0.01)
    # Stats: grad_norm ~ E|x|/tau^2 > 0 and step_norm = eta * grad_norm.
    np.testing.assert_allclose(stats['step_norm'], eta * stats['grad_norm'],
                               rtol=1e-5)
    self.assertGreater(float(stats['grad_norm']), 0.0)

  def test_no_gradient_to_start(self):
    energy = _quadratic(1.0)

    def f(x0):
      x, _ = langevin(energy, x0, jax.random.key(1), n_steps=5,
                      step_size=0.1, noise_std=0.01)
      return jnp.sum(x**2)

    g = jax.grad(f)(jnp.full((3, 4), 0.5))
    np.testing.assert_array_equal(np.asarray(g), 0.0)

  def test_clip_holds_the_chain_in_the_data_range(self):
    # A linear energy moves every pixel by 0.5 per step: 4 steps take it
    # to +-2 unclipped, to the bounds of the default clip (-1, 1).
    up = lambda x: -jnp.sum(x, axis=(1, 2, 3)) * 10.0
    x0 = jnp.zeros((2, 4, 4, 3))
    kw = dict(n_steps=4, step_size=0.05, noise_std=0.0)
    free, _ = langevin(up, x0, jax.random.key(2), clip=None, **kw)
    np.testing.assert_allclose(np.asarray(free), 2.0, rtol=1e-6)
    x, _ = langevin(up, x0, jax.random.key(2), **kw)
    np.testing.assert_array_equal(np.asarray(x), 1.0)
    x, _ = langevin(lambda x: -up(x), x0, jax.random.key(2), **kw)
    np.testing.assert_array_equal(np.asarray(x), -1.0)
    x, _ = langevin(up, x0, jax.random.key(2), clip=(-0.5, 0.25), **kw)
    np.testing.assert_array_equal(np.asarray(x), 0.25)

  def test_grad_clip(self):
    # A linear energy pushes every pixel up.
    energy = lambda x: -jnp.sum(x, axis=(1, 2, 3)) * 10.0
    x0 = jnp.zeros((2, 4, 4, 3))
    x, stats = langevin(energy, x0, jax.random.key(2), n_steps=4,
                        step_size=1.0, noise_std=0.0, grad_clip=0.5)
    # Each per-example gradient (norm 10 * sqrt(48)) is clipped to 0.5.
    np.testing.assert_allclose(stats['grad_norm'], 0.5, rtol=1e-5)
    # 4 steps of 0.5 * (unit direction): every pixel moves 4*0.5/sqrt(48).
    np.testing.assert_allclose(np.asarray(x), 2.0 / np.sqrt(48.0), rtol=1e-5)

  def test_clip_only_at_the_end(self):
    # E = (x - m)^2 / 2 with eta 1.5 overshoots: x <- -0.5 x + 1.5 m.
    # From 0 with m = 0.9: 1.35 (out of range), then 0.675 unclipped; with
    # per-step clipping 1.35 -> 1.0, then -0.5 + 1.35 = 0.85.
    energy = lambda x: jnp.sum(jnp.square(x - 0.9), axis=-1) / 2.0
    x0 = jnp.zeros((1, 1))
    run = lambda clip_at, n: langevin(
        energy, x0, jax.random.key(0), n_steps=n, step_size=1.5,
        noise_std=0.0, clip=(-1.0, 1.0), clip_at=clip_at)[0]
    np.testing.assert_allclose(run('end', 2), [[0.675]], rtol=1e-6)
    np.testing.assert_allclose(run('step', 2), [[0.85]], rtol=1e-6)
    # The end clip still applies: one step ends at 1.35 -> 1.0.
    np.testing.assert_allclose(run('end', 1), [[1.0]], rtol=1e-6)
    with self.assertRaisesRegex(ValueError, 'clip_at'):
      run('never', 1)

  def test_jit_static_steps_and_determinism(self):
    energy = _quadratic(1.0)

    @jax.jit
    @functools.partial(chex.assert_max_traces, n=1)
    def fn(x0, key, step_size):
      return langevin(energy, x0, key, n_steps=3, step_size=step_size,
                      noise_std=0.1)

    x0 = jnp.zeros((2, 5))
    key = jax.random.key(3)
    a, _ = fn(x0, key, step_size=0.1)
    b, _ = fn(x0, key, step_size=0.1)
    c, _ = fn(x0, jax.random.key(4), step_size=0.1)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    self.assertFalse(np.allclose(np.asarray(a), np.asarray(c)))

  def test_zero_steps_returns_start(self):
    x0 = jnp.arange(6.0).reshape(2, 3) / 10
    x, stats = langevin(_quadratic(1.0), x0, jax.random.key(0), n_steps=0,
                        step_size=1.0, noise_std=1.0)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x0))
    self.assertEqual(float(stats['step_norm']), 0.0)

  def test_bad_steps(self):
    with self.assertRaisesRegex(ValueError, 'n_steps'):
      langevin(_quadratic(1.0), jnp.zeros((2, 2)), jax.random.key(0),
               n_steps=-1, step_size=1.0, noise_std=1.0)
    with self.assertRaisesRegex(ValueError, 'grad_clip'):
      langevin(_quadratic(1.0), jnp.zeros((2, 2)), jax.random.key(0),
               n_steps=1, step_size=1.0, noise_std=1.0, grad_clip=0.0)


if __name__ == '__main__':
  absltest.main()

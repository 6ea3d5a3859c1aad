"""objectives.dls: the latent scale, the encoder loss, entropy and the
trackers, against hand-computed numbers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcjax.objectives import dls


def test_scale_has_sum_of_squares_d_and_is_one_for_uniform_v():
  v = jax.random.uniform(jax.random.key(0), (7,), minval=0.01, maxval=3.0)
  s = dls.latent_scale(v)
  np.testing.assert_allclose(float(jnp.sum(jnp.square(s))), 7.0, rtol=1e-5)
  # s is proportional to sqrt(v).
  np.testing.assert_allclose(np.asarray(s / jnp.sqrt(v)),
                             float(s[0] / jnp.sqrt(v[0])), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(dls.latent_scale(
      jnp.full((5,), 0.3))), np.ones(5), rtol=1e-6)


def test_scale_by_hand():
  # v = (1, 4): sqrt(v) = (1, 2), norm sqrt(5); s = sqrt(2) (1, 2) / sqrt(5).
  s = dls.latent_scale(jnp.array([1.0, 4.0]))
  np.testing.assert_allclose(np.asarray(s), [math.sqrt(2 / 5),
                                             2 * math.sqrt(2 / 5)], rtol=1e-6)


def test_encoder_loss_by_hand():
  z_pred = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  z = jnp.array([[0.0, 0.0], [1.0, 1.0]])
  s = jnp.array([1.0, 2.0])
  # Row 0: (1 * 1 + 4 * 4) / 2 = 8.5; row 1: (1 * 1 + 1 * 4) / 2 = 2.5.
  assert float(dls.encoder_loss(z_pred, z, s)) == pytest.approx(5.5)
  assert float(dls.encoder_loss(z_pred, z, s, jnp.array([1.0, 0.0]))
               ) == pytest.approx(8.5)
  assert float(dls.encoder_loss(z_pred, z, s, jnp.array([0.0, 1.0]))
               ) == pytest.approx(2.5)


def test_no_gradient_flows_through_the_scale():
  z_pred, z = jnp.array([[1.0, 2.0]]), jnp.zeros((1, 2))
  g_s = jax.grad(lambda s: dls.encoder_loss(z_pred, z, s))(
      jnp.array([1.0, 2.0]))
  np.testing.assert_array_equal(np.asarray(g_s), [0.0, 0.0])
  g_v = jax.grad(lambda v: jnp.sum(dls.latent_scale(v) * jnp.arange(2.0)))(
      jnp.array([1.0, 4.0]))
  np.testing.assert_array_equal(np.asarray(g_v), [0.0, 0.0])


def test_entropy_by_hand():
  # 0.5 * log(2 pi e) = 1.4189385 nats per unit-scale dimension.
  assert float(dls.entropy(jnp.ones(3))) == pytest.approx(3 * 1.4189385,
                                                          rel=1e-6)
  s = jnp.array([2.0, 0.5])
  assert float(dls.entropy(s)) == pytest.approx(
      2 * 1.4189385 + math.log(2.0) + math.log(0.5), rel=1e-6)


def test_second_moment_is_the_batch_mean_of_squares():
  zp = jnp.array([[1.0, -2.0], [3.0, 0.0]])
  np.testing.assert_allclose(np.asarray(dls.second_moment(zp)), [5.0, 2.0])


def test_ring_buffer_by_hand():
  t = dls.ring_buffer(2)
  st = t.init(2)
  np.testing.assert_array_equal(np.asarray(t.variance(st)), [1.0, 1.0])
  st = t.update(st, jnp.array([4.0, 0.0]))
  np.testing.assert_allclose(np.asarray(t.variance(st)), [2.5, 0.5])
  st = t.update(st, jnp.array([0.0, 4.0]))
  np.testing.assert_allclose(np.asarray(t.variance(st)), [2.0, 2.0])
  # The third update overwrites the oldest row (the first update).
  st = t.update(st, jnp.array([2.0, 2.0]))
  np.testing.assert_allclose(np.asarray(t.variance(st)), [1.0, 3.0])
  assert int(st.count) == 3


def test_ema_by_hand():
  t = dls.ema(0.75)
  st = t.init(2)
  st = t.update(st, jnp.array([3.0, 1.0]))      # 0.75 * 1 + 0.25 * x
  np.testing.assert_allclose(np.asarray(t.variance(st)), [1.5, 1.0])
  st = t.update(st, jnp.array([0.5, 5.0]))
  np.testing.assert_allclose(np.asarray(t.variance(st)), [1.25, 2.0])


def test_bad_tracker_settings_raise():
  with pytest.raises(ValueError, match='tracker'):
    dls.make_tracker('median', 4, 0.9)
  with pytest.raises(ValueError, match='size'):
    dls.ring_buffer(0)
  with pytest.raises(ValueError, match='decay'):
    dls.ema(1.0)

"""Tests for gcjax.objectives.adversarial and gcjax.objectives.distill."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from gcjax.objectives import adversarial as adv
from gcjax.objectives import distill


class FastPRNGTestCase(parameterized.TestCase):
  """Runs each test with the non-partitionable threefry.

  NOTE: with jax 0.10's default partitionable threefry, XLA:CPU spends tens
  of seconds compiling every random initializer here; the old lowering gives
  other random bits but the same semantics, and is ~50x cheaper to compile.
  """

  def setUp(self):
    super().setUp()
    self.enter_context(jax.threefry_partitionable(False))


REAL = jnp.array([[2.0], [-0.5]])
FAKE = jnp.array([[0.5], [-2.0]])


def _sp(x):  # softplus
  return math.log1p(math.exp(x))


class AdversarialTest(FastPRNGTestCase):

  @parameterized.named_parameters(
      # hinge: real relu(1-r) = [0, 1.5] -> .75; fake relu(1+f) = [1.5, 0]
      ('hinge', 'hinge', 0.75 + 0.75, 0.75),
      # lsgan: (r-1)^2 = [1, 2.25] -> 1.625; f^2 = [.25, 4] -> 2.125;
      # G: (f-1)^2 = [.25, 9] -> 4.625.
      ('lsgan', 'lsgan', 1.625 + 2.125, 4.625),
      ('vanilla', 'vanilla',
       (_sp(-2.0) + _sp(0.5)) / 2 + (_sp(0.5) + _sp(-2.0)) / 2,
       (_sp(-0.5) + _sp(2.0)) / 2),
      # wgan: mean(f) - mean(r) = -0.75 - 0.75; G: -mean(f) = 0.75.
      ('wgan', 'wgan', -1.5, 0.75),
  )
  def test_values(self, kind, d_expected, g_expected):
    np.testing.assert_allclose(adv.gan_d_loss(REAL, FAKE, kind), d_expected,
                               rtol=1e-6)
    np.testing.assert_allclose(adv.gan_g_loss(FAKE, kind), g_expected,
                               rtol=1e-6)

  def test_multiscale_sums(self):
    d = adv.gan_d_loss([REAL, REAL * 0], [FAKE, FAKE * 0], 'hinge')
    np.testing.assert_allclose(d, 1.5 + 2.0, rtol=1e-6)
    np.testing.assert_allclose(adv.gan_g_loss((FAKE, FAKE), 'lsgan'), 9.25,
                               rtol=1e-6)

  def test_vanilla_is_bce_with_logits(self):
    # BCE(sigmoid(r), 1) = -log sigmoid(r) = softplus(-r).
    r = jnp.array([0.3])
    np.testing.assert_allclose(adv.gan_g_loss(r, 'vanilla'),
                               -np.log(1 / (1 + np.exp(-0.3))), rtol=1e-6)

  def test_bad_kind(self):
    with self.assertRaisesRegex(ValueError, 'hinge'):
      adv.gan_g_loss(FAKE, 'nsgan')

  def test_gradient_penalty(self):
    # D(x) = w . x has gradient w everywhere: penalty = (|w| - 1)^2.
    w = jnp.array([3.0, 4.0])
    d_fn = lambda x: x @ w
    real = jnp.ones((5, 2))
    fake = -jnp.ones((5, 2))
    gp = adv.gradient_penalty(d_fn, real, fake, jax.random.key(0))
    np.testing.assert_allclose(gp, 16.0, rtol=1e-5)
    # D(x) = 0.5 |x|^2: gradient x_hat = (2a - 1) * real, norm |2a-1|*sqrt(2).
    key = jax.random.key(1)
    a = jax.random.uniform(key, (5, 1))
    d2 = lambda x: 0.5 * jnp.sum(x**2, axis=-1)
    expected = np.mean((np.abs(2 * np.asarray(a[:, 0]) - 1) * np.sqrt(2) - 1)
                       ** 2)
    np.testing.assert_allclose(adv.gradient_penalty(d2, real, fake, key),
                               expected, rtol=1e-5)


class DistillTest(FastPRNGTestCase):

  def test_l1(self):
    np.testing.assert_allclose(
        distill.l1(jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0])), 1.5)

  def test_total_variation(self):
    # One 2x3 image: rows [0, 1, 3], [2, 2, 2].
    x = jnp.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])[None, :, :, None]
    # Vertical |diffs| = [2, 1, 1] (3 elems), horizontal = [1, 2, 0, 0] (4).
    np.testing.assert_allclose(distill.total_variation(x), 4 / 3 + 3 / 4,
                               rtol=1e-6)
    np.testing.assert_allclose(distill.total_variation(x, 'sum'), 7.0)
    with self.assertRaisesRegex(ValueError, 'reduction'):
      distill.total_variation(x, 'max')

  def test_gram(self):
    # 1x2 spatial, 2 channels: pixels (1, 2) and (3, 4).
    f = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    g = distill.gram(f)
    expected = np.array([[1 + 9, 2 + 12], [2 + 12, 4 + 16]]) / (1 * 2 * 2)
    np.testing.assert_allclose(g[0], expected, rtol=1e-6)

  def test_style_and_perceptual(self):
    f = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    z = jnp.zeros_like(f)
    # Gram(f) entries / 4 = [2.5, 3.5, 3.5, 5] -> mean 3.625; two layers.
    np.testing.assert_allclose(distill.style_loss([f, f], [z, z]), 7.25,
                               rtol=1e-6)
    np.testing.assert_allclose(distill.perceptual_loss(f, z), 2.5)
    np.testing.assert_allclose(distill.perceptual_loss([f, f], [z, z]), 5.0)
    with self.assertRaisesRegex(ValueError, 'equally long'):
      distill.style_loss([f], [])

  def test_channel_mean_mse(self):
    fs = jnp.array([[[[1.0, 0.0]], [[3.0, 0.0]]]])      # means (2, 0)
    ft = jnp.array([[[[0.0, 1.0]]]])                     # means (0, 1)
    np.testing.assert_allclose(distill.channel_mean_mse(fs, ft),
                               (4 + 1) / 2, rtol=1e-6)

  def test_ssim_loss(self):
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1,
                           maxval=1)
    np.testing.assert_allclose(distill.ssim_loss(x, x), 0.0, atol=1e-5)
    loss, g = jax.value_and_grad(distill.ssim_loss)(x * 0.5, x)
    self.assertGreater(float(loss), 0.0)
    self.assertGreater(float(jnp.abs(g).sum()), 0.0)

  def test_ssim_loss_matches_pytorch_ssim(self):
    # pytorch_ssim (OMGD's loss), written out directly: an 11x11 Gaussian
    # window (sigma 1.5) as one 2D kernel, zero padding 5 (full-size map),
    # C1 = 0.01^2, C2 = 0.03^2, the map averaged over everything.
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 14, 13, 3)).astype(np.float32)
    x = 0.5 * (x + np.roll(x, 1, axis=2))
    y = np.clip(x + 0.3 * rng.standard_normal(x.shape), -1, 1).astype(
        np.float32)
    g = np.exp(-(np.arange(11) - 5.0)**2 / (2 * 1.5**2))
    g /= g.sum()
    win = np.outer(g, g)

    def filt(a):                       # [B, H, W, C], zero padding 5
      p = np.pad(a.astype(np.float64), ((0, 0), (5, 5), (5, 5), (0, 0)))
      out = np.zeros(a.shape, np.float64)
      for i in range(11):
        for j in range(11):
          out += win[i, j] * p[:, i:i + a.shape[1], j:j + a.shape[2]]
      return out

    mu1, mu2 = filt(x), filt(y)
    s11 = filt(x * x) - mu1**2
    s22 = filt(y * y) - mu2**2
    s12 = filt(x * y) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)
                / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2)))
    np.testing.assert_allclose(distill.ssim_loss(x, y), 1 - ssim_map.mean(),
                               rtol=1e-5, atol=1e-6)

  def test_adapter(self):
    ad = distill.Adapter(out_ch=5)
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    v = ad.init(jax.random.key(1), x, train=False)
    (y, feats), upd = ad.apply(v, x, train=True, mutable=['batch_stats'])
    self.assertEqual(y.shape, (2, 4, 4, 5))
    self.assertEqual(feats, {})
    self.assertGreaterEqual(float(y.min()), 0.0)
    self.assertNotIn('bias', v['params']['Conv_0'])
    self.assertIn('batch_stats', upd)


if __name__ == '__main__':
  absltest.main()

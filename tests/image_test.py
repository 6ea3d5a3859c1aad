"""Tests for gcjax.metrics.image against scikit-image."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from skimage import color, filters, metrics

from gcjax.metrics import image


def _pair(seed, shape, noise=0.3):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, shape).astype(np.float32)
  # Smooth x a little so SSIM is far from 0 and from 1.
  x = 0.5 * (x + np.roll(x, 1, axis=1))
  y = np.clip(x + noise * rng.standard_normal(shape), -1, 1).astype(np.float32)
  return x, y


class ImageMetricsTest(parameterized.TestCase):

  @parameterized.parameters(('VALID',), ('SAME',))
  def test_separable_filter_equals_grouped_conv_values_and_grads(self, pad):
    x = jnp.asarray(_pair(1, (2, 17, 15, 5))[0])
    g = image._gaussian_1d(11, 1.5)

    def plain(x):   # the depthwise conv with the 2D outer-product kernel
      k = jnp.tile((g[:, None] * g[None, :])[:, :, None, None], (1, 1, 1, 5))
      return jax.lax.conv_general_dilated(
          x, k, (1, 1), pad, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
          feature_group_count=5, precision=jax.lax.Precision.HIGHEST)

    fast = lambda x: image._separable_filter(x, g, pad)
    np.testing.assert_allclose(fast(x), plain(x), atol=1e-6)
    loss = lambda f: lambda x: jnp.sum(jnp.sin(3.0 * f(x)))
    np.testing.assert_allclose(jax.grad(loss(fast))(x),
                               jax.grad(loss(plain))(x), atol=1e-5)

  @parameterized.parameters((1,), (3,))
  def test_psnr_matches_skimage(self, c):
    x, y = _pair(0, (2, 20, 24, c))
    got = np.asarray(image.psnr(x, y))
    want = [metrics.peak_signal_noise_ratio(a, b, data_range=2.0)
            for a, b in zip(x, y)]
    np.testing.assert_allclose(got, want, rtol=1e-5)

  @parameterized.parameters((1,), (3,))
  def test_ssim_matches_skimage(self, c):
    x, y = _pair(1, (2, 23, 19, c))
    got = np.asarray(image.ssim(x, y))
    want = [metrics.structural_similarity(
        a.astype(np.float64), b.astype(np.float64), data_range=2.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        channel_axis=-1) for a, b in zip(x, y)]
    self.assertTrue(all(0.05 < w < 0.95 for w in want), want)
    np.testing.assert_allclose(got, want, atol=1e-4)

  def test_ssim_identity_and_gradient(self):
    x, y = _pair(2, (1, 16, 16, 3))
    np.testing.assert_allclose(image.ssim(x, x), [1.0], atol=1e-5)
    loss = lambda a: jnp.sum(1.0 - image.ssim(a, y))
    g = jax.jit(jax.grad(loss))(x)
    self.assertEqual(g.shape, x.shape)
    self.assertTrue(np.all(np.isfinite(g)))
    # A small step down the gradient raises SSIM.
    self.assertGreater(float(image.ssim(x - 0.5 * g, y)[0]),
                       float(image.ssim(x, y)[0]))

  def test_ssim_rejects_small_images(self):
    x = np.zeros((1, 8, 8, 3), np.float32)
    with self.assertRaisesRegex(ValueError, 'filter_size'):
      image.ssim(x, x)

  @parameterized.parameters((1,), (3,))
  def test_laplacian_variance_matches_skimage(self, c):
    x, _ = _pair(3, (2, 17, 21, c))
    got = np.asarray(image.laplacian_variance(x))
    u = (x.astype(np.float64) + 1) / 2
    grays = [color.rgb2gray(a) if c == 3 else a[..., 0] for a in u]
    want = [filters.laplace(g, ksize=3).var() for g in grays]
    np.testing.assert_allclose(got, want, rtol=1e-4)

  def test_blur_lowers_laplacian_variance(self):
    x, _ = _pair(4, (1, 32, 32, 3))
    blurred = filters.gaussian(x[0], sigma=2, channel_axis=-1)[None]
    self.assertLess(float(image.laplacian_variance(blurred)[0]),
                    0.1 * float(image.laplacian_variance(x)[0]))


if __name__ == '__main__':
  absltest.main()

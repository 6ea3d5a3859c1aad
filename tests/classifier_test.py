"""Tests for gcjax.metrics.classifier (domain IS) and its shipped weights."""

import pathlib
import shutil
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from gcjax import assets, make_classifier, metric_weights
from gcjax.data import embedded
from gcjax.metrics import classifier


def _class_coded_images(classes, size=16, channels=3):
  """Constant images whose value encodes the class: (c + 0.5) / 5 - 1."""
  v = (np.asarray(classes, np.float32) + 0.5) / 5.0 - 1.0
  return np.broadcast_to(v[:, None, None, None],
                         (len(v), size, size, channels)).copy()


def _confident_logits_fn(x):
  """Decodes the class from the constant image; confident one-hot logits."""
  c = jnp.floor((x.mean(axis=(1, 2, 3)) + 1.0) * 5.0).astype(jnp.int32)
  return 30.0 * jax.nn.one_hot(c, classifier.N_CLASSES)


class InceptionScoreTest(absltest.TestCase):

  def test_uniform_confident_batch_scores_n_classes(self):
    images = _class_coded_images(np.arange(200) % 10)
    mean, std = classifier.inception_score(_confident_logits_fn, images,
                                           splits=4, batch_size=64)
    self.assertAlmostEqual(mean, 10.0, delta=1e-3)
    self.assertLess(std, 1e-3)

  def test_single_class_batch_scores_one(self):
    images = _class_coded_images(np.full(60, 3), channels=1)
    mean, _ = classifier.inception_score(_confident_logits_fn, images,
                                         splits=3)
    self.assertAlmostEqual(mean, 1.0, delta=1e-3)

  def test_uninformative_classifier_scores_one(self):
    images = _class_coded_images(np.arange(50) % 10)
    mean, _ = classifier.inception_score(
        lambda x: jnp.zeros((x.shape[0], 10)), images, splits=5)
    self.assertAlmostEqual(mean, 1.0, places=5)

  def test_to_classifier_input(self):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 56, 56, 3))
    y = classifier.to_classifier_input(x)
    self.assertEqual(y.shape, (2, 28, 28, 1))
    self.assertTrue(np.all(np.abs(np.asarray(y)) <= 1.0))
    with self.assertRaisesRegex(ValueError, 'splits'):
      classifier.inception_score(_confident_logits_fn, x, splits=10)


class ShippedWeightsTest(absltest.TestCase):
  """The classifier that ships in gcjax/weights, loaded without training."""

  def test_file_is_small_and_matches_the_pinned_digest(self):
    path = metric_weights.FASHION_CLASSIFIER
    self.assertLess(path.stat().st_size, 1 << 20)
    self.assertEqual(assets.sha256_of(path),
                     metric_weights.FASHION_CLASSIFIER_SHA256)

  def test_recorded_accuracy_is_the_test_set_accuracy(self):
    clf = metric_weights.load_fashion_classifier()
    test_x, test_y = embedded.load_fashion_mnist('test')
    acc = make_classifier.accuracy(clf.variables, test_x, test_y)
    self.assertAlmostEqual(acc, clf.test_accuracy, places=6)
    self.assertGreater(acc, 0.89)  # 0.9033 (2000 steps, seed 0)
    # The metric path: logits of the loaded variables classify real images.
    logits = classifier.classifier_logits_fn(clf.variables)(
        make_classifier.uint8_to_input(test_x[:500]))
    self.assertGreater(
        float(np.mean(np.argmax(logits, -1) == test_y[:500])), 0.85)

  def test_missing_or_tampered_file_names_file_and_command(self):
    with tempfile.TemporaryDirectory() as d:
      missing = pathlib.Path(d) / 'fashion_classifier.npz'
      with mock.patch.object(metric_weights, 'FASHION_CLASSIFIER', missing):
        with self.assertRaisesRegex(assets.AssetError,
                                    'missing.*gcjax.make_classifier'):
          metric_weights.load_fashion_classifier()
      shutil.copy(metric_weights.FASHION_CLASSIFIER, missing)
      with open(missing, 'ab') as f:
        f.write(b'x')
      with mock.patch.object(metric_weights, 'FASHION_CLASSIFIER', missing):
        with self.assertRaisesRegex(
            assets.AssetError,
            'fashion_classifier.npz.*python -m gcjax.make_classifier'):
          metric_weights.load_fashion_classifier()


if __name__ == '__main__':
  absltest.main()

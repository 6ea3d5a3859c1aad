"""Tests for gcjax.metrics.classifier (domain Inception Score)."""

import os
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

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


class TrainTest(absltest.TestCase):

  def test_small_subset_training_and_cache(self):
    train_x, train_y = embedded.load_fashion_mnist('train')
    test_x, test_y = embedded.load_fashion_mnist('test')
    small = (train_x[:1000], train_y[:1000])
    variables = classifier.train_classifier(*small, steps=150, seed=0,
                                            batch_size=32, learning_rate=3e-3)
    acc = classifier.accuracy(variables, test_x[:1000], test_y[:1000])
    self.assertGreater(acc, 0.70)

    # The cache path trains once (training stubbed with the variables
    # above), then only reads the npz.
    def fake_load(split):
      return small if split == 'train' else (test_x[:1000], test_y[:1000])

    with tempfile.TemporaryDirectory() as d, mock.patch.object(
        embedded, 'load_fashion_mnist', side_effect=fake_load) as load, \
        mock.patch.object(classifier, 'train_classifier',
                          return_value=variables) as train:
      first = classifier.load_or_train_fmnist_classifier(d, steps=200)
      self.assertEqual(os.listdir(d), ['fmnist_cnn-v1-s200-seed0.npz'])
      second = classifier.load_or_train_fmnist_classifier(d, steps=200)
      self.assertEqual(load.call_count, 2)  # train + test, first call only
      train.assert_called_once_with(*small, 200, 0)
    self.assertAlmostEqual(first.test_accuracy, second.test_accuracy)
    self.assertAlmostEqual(second.test_accuracy, acc)
    x = classifier.uint8_to_input(test_x[:8])
    np.testing.assert_allclose(first.logits_fn(x), second.logits_fn(x),
                               rtol=1e-6)
    np.testing.assert_allclose(
        first.logits_fn(x), classifier.classifier_logits_fn(variables)(x),
        rtol=1e-5, atol=1e-5)


if __name__ == '__main__':
  absltest.main()

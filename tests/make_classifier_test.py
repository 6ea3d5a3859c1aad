"""Tests for gcjax.make_classifier: training and the weights file it writes."""

import os
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest

from gcjax import make_classifier, metric_weights
from gcjax.data import embedded
from gcjax.metrics import classifier


class MakeClassifierTest(absltest.TestCase):

  def test_small_subset_training_and_weights_file(self):
    train_x, train_y = embedded.load_fashion_mnist('train')
    test_x, test_y = embedded.load_fashion_mnist('test')
    small = (train_x[:1000], train_y[:1000])
    variables = make_classifier.train_classifier(
        *small, steps=150, seed=0, batch_size=32, learning_rate=3e-3)
    acc = make_classifier.accuracy(variables, test_x[:1000], test_y[:1000])
    self.assertGreater(acc, 0.70)

    # make() loads the data, trains (stubbed with the variables above) and
    # writes a file that metric_weights reads back.
    def fake_load(split):
      return small if split == 'train' else (test_x[:1000], test_y[:1000])

    with tempfile.TemporaryDirectory() as d, mock.patch.object(
        embedded, 'load_fashion_mnist', side_effect=fake_load), \
        mock.patch.object(make_classifier, 'train_classifier',
                          return_value=variables) as train:
      out = os.path.join(d, 'w', 'clf.npz')
      self.assertAlmostEqual(make_classifier.make(out, steps=200), acc)
      train.assert_called_once_with(*small, 200, 0)
      loaded = metric_weights.load_fashion_classifier(out)
    self.assertAlmostEqual(loaded.test_accuracy, acc)
    x = make_classifier.uint8_to_input(test_x[:8])
    np.testing.assert_allclose(
        classifier.classifier_logits_fn(loaded.variables)(x),
        classifier.classifier_logits_fn(variables)(x), rtol=1e-5, atol=1e-5)

  def test_bad_labels_raise(self):
    with self.assertRaisesRegex(ValueError, 'labels'):
      make_classifier.train_classifier(
          np.zeros((4, 28, 28), np.uint8), np.array([0, 1, 2, 10]), 1, 0)


if __name__ == '__main__':
  absltest.main()

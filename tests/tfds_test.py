"""Tests for gcjax.data.tfds on tiny TFDS data sets built here (no network).

Needs tensorflow-datasets and array-record (`pip install gcjax[tfds]`), not
TensorFlow: the data sets are written as array_record from PNG bytes, which
TFDS encodes without TensorFlow.
"""

import io
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from gcjax import data
from gcjax.data import tfds as gtfds


def _png(array):
  buf = io.BytesIO()
  Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
      buf, format='PNG')
  buf.seek(0)
  return buf


def _pairs(n, seed):
  rng = np.random.default_rng(seed)
  for i in range(n):
    src = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    src[0, 0, 0] = i  # Identifies the example.
    tgt = rng.integers(0, 256, (12, 16, 1), dtype=np.uint8)
    yield i, src, tgt


class GcjaxTinyPairs(tfds.core.GeneratorBasedBuilder):
  """Paired images like pix2pix: RGB input, grayscale target, a label."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'input_image': tfds.features.Image(shape=(None, None, 3)),
            'meta': {
                'target_image': tfds.features.Image(shape=(None, None, 1)),
                'label': tfds.features.ClassLabel(num_classes=10),
            },
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(5, 0),
            'test': self._generate_examples(3, 1)}

  def _generate_examples(self, n, seed):
    for i, src, tgt in _pairs(n, seed):
      yield i, {'input_image': _png(src),
                'meta': {'target_image': _png(tgt), 'label': i % 10}}


class GcjaxTinyUnpaired(tfds.core.GeneratorBasedBuilder):
  """CycleGAN layout: splits trainA/trainB, feature 'image'."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(
            {'image': tfds.features.Image(shape=(None, None, 3))}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'trainA': self._generate_examples(4, 2),
            'trainB': self._generate_examples(2, 3)}

  def _generate_examples(self, n, seed):
    for i, src, _ in _pairs(n, seed):
      yield i, {'image': _png(src)}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('tfds'))
  for cls in (GcjaxTinyPairs, GcjaxTinyUnpaired):
    builder = cls(data_dir=root, file_format='array_record')
    builder.download_and_prepare()
  return root


def test_runs_without_tensorflow(data_dir):
  del data_dir  # Built above, without TensorFlow.
  assert 'tensorflow' not in sys.modules


def test_load_tfds_pairs(data_dir):
  keys = {'src': 'input_image', 'tgt': 'meta/target_image',
          'label': 'meta/label'}
  out = gtfds.load_tfds('gcjax_tiny_pairs', 'train', keys, resolution=8,
                        data_dir=data_dir)
  assert out['src'].shape == (5, 8, 8, 3) and out['src'].dtype == np.uint8
  assert out['tgt'].shape == (5, 8, 8, 3)  # Gray repeated to RGB.
  np.testing.assert_array_equal(out['tgt'][..., 0], out['tgt'][..., 2])
  assert sorted(out['label'].tolist()) == list(range(5))
  # At the stored size nothing is resampled: pixels round-trip exactly.
  full = gtfds.load_tfds('gcjax_tiny_pairs', 'test', {'src': 'input_image'},
                         resolution=12, data_dir=data_dir, limit=2,
                         channels=None)
  assert full['src'].shape == (2, 12, 12, 3)
  expected = {int(s[0, 0, 0]): s for _, s, _ in _pairs(3, 1)}
  for image in full['src']:
    np.testing.assert_array_equal(image, expected[int(image[0, 0, 0])])


def test_load_via_dispatch_unpaired(data_dir):
  out = data.load('tfds_unpaired', 'train', tfds_name='gcjax_tiny_unpaired',
                  resolution=6, data_dir=data_dir)
  assert out['a'].shape == (4, 6, 6, 3) and out['b'].shape == (2, 6, 6, 3)
  one = data.load('tfds', 'trainB', name='gcjax_tiny_unpaired',
                  keys={'x': 'image'}, resolution=6, data_dir=data_dir)
  np.testing.assert_array_equal(np.sort(one['x'], 0), np.sort(out['b'], 0))


def test_errors(data_dir, tmp_path):
  with pytest.raises(KeyError, match="'nope' not in example"):
    gtfds.load_tfds('gcjax_tiny_pairs', 'train', {'x': 'nope'}, 8,
                    data_dir=data_dir)
  with pytest.raises(FileNotFoundError, match='not prepared'):
    gtfds.load_tfds('gcjax_tiny_pairs', 'train', {'x': 'input_image'}, 8,
                    data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match='not found'):
    gtfds.load_tfds('gcjax_no_such_set', 'train', {'x': 'image'}, 8,
                    data_dir=str(tmp_path))
  with pytest.raises(ValueError, match='needs name='):
    data.load('tfds', 'train', keys={'x': 'image'}, resolution=8)


def test_missing_tfds_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)
  with pytest.raises(ImportError, match=r'pip install gcjax\[tfds\]'):
    gtfds.load_tfds('x', 'train', {'x': 'image'}, 8)

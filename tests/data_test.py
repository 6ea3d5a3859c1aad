"""Tests for gcjax.data: embedded sets, image folders and `load`."""

import glob
import hashlib
import io
import os

import numpy as np
import pytest
from PIL import Image

from gcjax import data
from gcjax.data import embedded, faces, folders


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
  monkeypatch.setenv('GCJAX_CACHE', str(tmp_path / 'cache'))


# Fashion-MNIST and edges.


def test_fashion_mnist_shapes():
  images, labels = embedded.load_fashion_mnist('test')
  assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
  assert labels.shape == (10000,) and labels.dtype == np.int32
  assert set(np.unique(labels)) == set(range(10))
  assert images.max() == 255 and images[:, 0, 0].max() < 50  # Dark border.


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
  with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion'):
    embedded.load_fashion_mnist('train', root=str(tmp_path))


def test_bad_split():
  with pytest.raises(ValueError, match="'val'"):
    embedded.load_fashion_mnist('val')


def test_fashion_images_resize_channels_classes():
  out = embedded.load_fashion_images('test', resolution=16, channels=3,
                                     classes=(0, 1), limit=20)
  assert out['img'].shape == (20, 16, 16, 3) and out['img'].dtype == np.uint8
  np.testing.assert_array_equal(out['img'][..., 0], out['img'][..., 2])
  assert set(out['label']) <= {0, 1}


def test_edges2fashion_pairs_and_cache(tmp_path):
  out = embedded.load_edges2fashion('test', limit=12)
  assert set(out) == {'src', 'tgt', 'label'}
  for key in ('src', 'tgt'):
    assert out[key].shape == (12, 32, 32, 1) and out[key].dtype == np.uint8
  assert set(out['label']) <= set(embedded.SHOE_CLASSES)
  # Black lines on white: mostly white, a few percent edge pixels.
  assert set(np.unique(out['src'])) == {0, 255}
  edge_frac = (out['src'] == 0).mean()
  assert 0.03 < edge_frac < 0.3, edge_frac
  # Edges lie on the object: near bright target pixels, not on the border.
  assert (out['src'][:, 0] == 255).all() and (out['src'][:, :, 0] == 255).all()
  # One cache file, plus the sidecar with its digest.
  cached = sorted(os.listdir(tmp_path / 'cache'))
  assert len(cached) == 2 and cached[0].endswith('.npz')
  assert cached[1] == cached[0] + '.sha256'
  again = embedded.load_edges2fashion('test', limit=12)
  for key in out:
    np.testing.assert_array_equal(out[key], again[key])
  fresh = embedded.load_edges2fashion('test', limit=12, use_cache=False)
  np.testing.assert_array_equal(out['src'], fresh['src'])
  # Other arguments give another cache entry.
  rgb = embedded.load_edges2fashion('test', limit=4, channels=3,
                                    resolution=24)
  assert rgb['src'].shape == (4, 24, 24, 3)
  assert len(glob.glob(str(tmp_path / 'cache' / '*.npz'))) == 2


def test_edges2fashion_damaged_cache_is_rebuilt(tmp_path):
  out = embedded.load_edges2fashion('test', limit=3)
  (path,) = (tmp_path / 'cache').glob('*.npz')
  path.write_bytes(b'not an npz')
  again = embedded.load_edges2fashion('test', limit=3)
  np.testing.assert_array_equal(out['src'], again['src'])


def test_edges2fashion_bad_edge():
  with pytest.raises(ValueError, match="'hed'"):
    embedded.load_edges2fashion('test', edge='hed', limit=1)


# edges2faces (face DCGAN + Canny).


def test_edges2faces_deterministic_and_split_apart(tmp_path):
  a = faces.load_edges2faces('test', n_test=6, use_cache=False)
  b = faces.load_edges2faces('test', n_test=6, use_cache=False)
  for k in ('src', 'tgt', 'label'):
    assert a[k].tobytes() == b[k].tobytes(), k
  assert a['tgt'].shape == a['src'].shape == (6, 64, 64, 3)
  assert a['tgt'].dtype == np.uint8
  # Edge maps: black lines on white, gray repeated.
  assert set(np.unique(a['src'])) <= {0, 255}
  assert (a['src'] == 255).mean() > 0.5
  np.testing.assert_array_equal(a['src'][..., 0], a['src'][..., 2])
  tr = faces.load_edges2faces('train', n_train=6, use_cache=False)
  other = faces.load_edges2faces('test', n_test=6, seed=1, use_cache=False)
  assert not np.array_equal(tr['tgt'], a['tgt'])
  assert not np.array_equal(other['tgt'], a['tgt'])
  # Through the cache: the same bytes again; limit cuts the split.
  c = data.load('edges2faces', 'test', n_test=6, limit=4)
  assert c['tgt'].tobytes() == a['tgt'][:4].tobytes()
  assert any(f.startswith('edges2faces') for f in os.listdir(
      embedded.cache_dir()))


# Photos.


def _digest(image):
  return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_photos_train_test_disjoint_and_deterministic():
  train = embedded.load_photos('train', resolution=16, crops_per_image=3)
  test = embedded.load_photos('test', resolution=16, crops_per_image=3)
  n_train, n_test = len(embedded.TRAIN_PHOTOS), len(embedded.TEST_PHOTOS)
  assert train['src'].shape == (3 * n_train, 16, 16, 3)
  assert test['src'].shape == (3 * n_test, 16, 16, 3)
  assert train['src'].dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(train['label']), [3] * n_train)
  # Whole photos are held out: no source photo is in both splits.
  train_photos = {_digest(embedded._photo(n)) for n in embedded.TRAIN_PHOTOS}
  test_photos = {_digest(embedded._photo(n)) for n in embedded.TEST_PHOTOS}
  assert len(train_photos) == n_train and len(test_photos) == n_test
  assert not train_photos & test_photos
  again = embedded.load_photos('test', resolution=16, crops_per_image=3)
  np.testing.assert_array_equal(test['src'], again['src'])
  other = embedded.load_photos('test', resolution=16, crops_per_image=3,
                               seed=1)
  assert not np.array_equal(test['src'], other['src'])


# Folders.


def _save(path, array, fmt=None):
  Image.fromarray(array).save(path, format=fmt)


def _pair_image(rng, h=8, w=8):
  a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  b = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  return a, b, np.concatenate([a, b], axis=1)


def test_paired_folder_halves_and_direction(tmp_path):
  rng = np.random.default_rng(0)
  halves = []
  for i in range(3):
    a, b, ab = _pair_image(rng)
    halves.append((a, b))
    _save(tmp_path / f'{i}.png', ab)
  (tmp_path / 'notes.txt').write_text('ignored')
  out = folders.load_paired_folder(str(tmp_path), resolution=8)
  assert out['src'].shape == (3, 8, 8, 3) and out['src'].dtype == np.uint8
  for i, (a, b) in enumerate(halves):  # Same size: no resampling.
    np.testing.assert_array_equal(out['src'][i], a)
    np.testing.assert_array_equal(out['tgt'][i], b)
  back = folders.load_paired_folder(str(tmp_path), 8, direction='BtoA')
  np.testing.assert_array_equal(back['src'], out['tgt'])
  small = folders.load_paired_folder(str(tmp_path), 4, limit=2)
  assert small['tgt'].shape == (2, 4, 4, 3)


def test_paired_folder_gray_and_rgba_become_rgb(tmp_path):
  gray = np.arange(64, dtype=np.uint8).reshape(4, 16)
  _save(tmp_path / 'g.png', gray)
  rgba = np.full((4, 16, 4), 200, np.uint8)
  rgba[..., 3] = 0  # Alpha is dropped, colors kept.
  _save(tmp_path / 'r.png', rgba)
  out = folders.load_paired_folder(str(tmp_path), resolution=4)
  assert out['src'].shape == (2, 4, 4, 3)
  for c in (1, 2):  # Gray is repeated over the channels.
    np.testing.assert_array_equal(out['src'][0, ..., c], out['src'][0, ..., 0])
  assert out['src'][0].std() > 0
  assert (out['src'][1] == 200).all()


def test_paired_folder_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    folders.load_paired_folder(str(tmp_path / 'missing'), 8)
  with pytest.raises(ValueError, match='holds no image'):
    folders.load_paired_folder(str(tmp_path), 8)
  rng = np.random.default_rng(1)
  _save(tmp_path / 'odd.png', rng.integers(0, 256, (8, 15, 3), np.uint8))
  with pytest.raises(ValueError, match=r'odd\.png: width 15 is odd'):
    folders.load_paired_folder(str(tmp_path), 8)
  with pytest.raises(ValueError, match='direction'):
    folders.load_paired_folder(str(tmp_path), 8, direction='AB')


def test_corrupt_png_is_named(tmp_path):
  (tmp_path / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage' * 9)
  with pytest.raises(ValueError, match=r'cannot read image .*bad\.png'):
    folders.load_paired_folder(str(tmp_path), 8)


def test_truncated_jpeg_is_named(tmp_path):
  rng = np.random.default_rng(2)
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (32, 64, 3), np.uint8)).save(
      buf, format='JPEG')
  (tmp_path / 'cut.jpg').write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
  with pytest.raises(ValueError, match=r'cut\.jpg.*truncated'):
    folders.load_paired_folder(str(tmp_path), 8)


def test_16bit_image_is_rejected(tmp_path):
  Image.fromarray(np.full((4, 8), 40000, np.uint16)).save(tmp_path / 'w.png')
  with pytest.raises(ValueError, match=r'w\.png.*not 8-bit'):
    folders.load_paired_folder(str(tmp_path), 4)


def test_unpaired_folders(tmp_path):
  rng = np.random.default_rng(3)
  for domain, n in (('A', 3), ('B', 2)):
    (tmp_path / f'train{domain}').mkdir()
    for i in range(n):
      _save(tmp_path / f'train{domain}' / f'{i}.jpg',
            rng.integers(0, 256, (10, 12, 3), np.uint8))
  out = folders.load_unpaired_folders(str(tmp_path), 'train', resolution=6)
  assert out['a'].shape == (3, 6, 6, 3) and out['b'].shape == (2, 6, 6, 3)
  with pytest.raises(FileNotFoundError, match='testA'):
    folders.load_unpaired_folders(str(tmp_path), 'test', 6)
  with pytest.raises(FileNotFoundError, match='nowhere'):
    folders.load_unpaired_folders(str(tmp_path / 'nowhere'), 'train', 6)


# Dispatch.


def test_load_dispatch(tmp_path):
  out = data.load('fashion', 'test', resolution=8, limit=5)
  assert out['img'].shape == (5, 8, 8, 1)
  (tmp_path / 'train').mkdir()
  _save(tmp_path / 'train' / 'x.png', np.zeros((4, 8, 3), np.uint8))
  pair = data.load('paired_folder', 'train', path=str(tmp_path), resolution=4)
  assert pair['src'].shape == (1, 4, 4, 3)


def test_load_unknown_name_lists_valid_ones():
  with pytest.raises(ValueError, match='edges2fashion.*unpaired_folders'):
    data.load('edges2shoes', 'train')

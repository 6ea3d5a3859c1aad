"""Loads the offline default data sets (Fashion-MNIST, edges, photos).

Everything here is readable without a network: Fashion-MNIST from the Debian
package `dataset-fashion-mnist`, photos from the sample images bundled with
scikit-image and scikit-learn. Arrays are returned as uint8 NHWC images and
int32 labels; the pipeline (`gcjax.data.pipeline`) turns them into float32
batches in [-1, 1].
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Sequence

import numpy as np
from PIL import Image

from gcjax import npz

FASHION_ROOT = '/usr/share/datasets/fashion-mnist'
FASHION_CLASSES = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat',
                   'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot')
SHOE_CLASSES = (5, 7, 9)  # sandal, sneaker, ankle boot.

# Whole photos are held out for 'test', so test crops never overlap train.
TRAIN_PHOTOS = ('astronaut', 'coffee', 'rocket', 'hubble_deep_field',
                'retina', 'immunohistochemistry', 'stereo_motorcycle',
                'china.jpg')
TEST_PHOTOS = ('chelsea', 'flower.jpg')

# Bump when the output of a cached loader changes for the same arguments.
_CACHE_VERSION = 1
_SPLITS = ('train', 'test')


def _check_split(split: str) -> None:
  if split not in _SPLITS:
    raise ValueError(f'split must be one of {_SPLITS}, got {split!r}')


def cache_dir() -> str:
  """Returns the cache folder: $GCJAX_CACHE, default ~/.cache/gcjax."""
  return os.environ.get('GCJAX_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'gcjax')


def _read_idx(path: str) -> np.ndarray:
  """Reads a gzipped idx file (the MNIST format) into a uint8 array."""
  with gzip.open(path, 'rb') as f:
    data = f.read()
  magic = int.from_bytes(data[:4], 'big')
  if magic >> 8 != 0x08:  # 0x08 = unsigned byte payload.
    raise ValueError(f'{path}: not a uint8 idx file (magic {magic:#x})')
  ndim = magic & 0xFF
  dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big')
          for i in range(ndim)]
  offset = 4 + 4 * ndim
  if len(data) - offset != int(np.prod(dims)):
    raise ValueError(f'{path}: header says {dims}, payload has '
                     f'{len(data) - offset} bytes')
  return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def load_fashion_mnist(
    split: str = 'train', root: str = FASHION_ROOT
) -> tuple[np.ndarray, np.ndarray]:
  """Loads Fashion-MNIST from the Debian package's idx files.

  Args:
    split: 'train' (60,000 images) or 'test' (10,000 images).
    root: folder with `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`.

  Returns:
    (images, labels): uint8 [N, 28, 28] (bright object on black) and
    int32 [N] class ids (see FASHION_CLASSES).
  """
  _check_split(split)
  prefix = 'train' if split == 'train' else 't10k'
  paths = [os.path.join(root, f'{prefix}-{kind}-ubyte.gz')
           for kind in ('images-idx3', 'labels-idx1')]
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f'Fashion-MNIST file {path} not found. Install the Debian package '
          '(`apt-get install dataset-fashion-mnist`) or run scripts/setup.sh.')
  images, labels = (_read_idx(p) for p in paths)
  if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
    raise ValueError(f'{root}: images {images.shape} and labels '
                     f'{labels.shape} do not match Fashion-MNIST')
  return images, labels.astype(np.int32)


def resize(image: np.ndarray, resolution: int) -> np.ndarray:
  """Resizes one uint8 [H, W] or [H, W, C] image to a square, bicubic."""
  if image.shape[:2] == (resolution, resolution):
    return image
  out = Image.fromarray(image).resize((resolution, resolution),
                                      Image.Resampling.BICUBIC)
  return np.asarray(out)


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """uint8 [N, H, W] -> [N, H, W, channels] (gray repeated for 3)."""
  if channels not in (1, 3):
    raise ValueError(f'channels must be 1 or 3, got {channels}')
  return np.repeat(images[..., None], channels, axis=-1)


def _select(images, labels, classes, limit, per_class=0):
  if per_class > 0:
    # The first ``per_class`` images of each class, in file order.
    keep = np.zeros(len(labels), bool)
    for c in np.unique(labels):
      keep[np.flatnonzero(labels == c)[:per_class]] = True
    images, labels = images[keep], labels[keep]
  if classes is not None:
    bad = [c for c in classes if not 0 <= int(c) < len(FASHION_CLASSES)]
    if bad:
      raise ValueError(f'classes must be Fashion-MNIST ids in [0, 9], got {bad}')
    keep = np.isin(labels, np.asarray(classes))
    images, labels = images[keep], labels[keep]
  if limit is not None and limit >= 0:
    images, labels = images[:limit], labels[:limit]
  return images, labels


def load_fashion_images(
    split: str = 'train',
    resolution: int = 32,
    channels: int = 1,
    classes: Sequence[int] | None = None,
    limit: int = -1,
    root: str = FASHION_ROOT,
    per_class: int = 0,
) -> dict[str, np.ndarray]:
  """Loads Fashion-MNIST images (for GANs; with labels, class-conditional).

  Args:
    split: 'train' or 'test'.
    resolution: output side; images are resized bicubic from 28x28.
    channels: 1, or 3 (the gray value repeated).
    classes: class ids to keep (None keeps all ten).
    limit: keep only the first `limit` images (-1 keeps all).
    root: Fashion-MNIST folder.
    per_class: > 0 keeps the first ``per_class`` images of each class
      (limited-data training sets, e.g. 10 per class); applied first.

  Returns:
    dict(img=uint8 [N, R, R, C], label=int32 [N]).
  """
  images, labels = load_fashion_mnist(split, root)
  images, labels = _select(images, labels, classes, limit, per_class)
  images = np.stack([resize(im, resolution) for im in images]) if len(
      images) else np.zeros((0, resolution, resolution), np.uint8)
  return dict(img=_to_channels(images, channels), label=labels)


def default_canny_sigma(resolution: int) -> float:
  """Canny sigma giving an outline plus main inner lines (1.0 at 32x32)."""
  return resolution / 32.0


def edge_map(image: np.ndarray, sigma: float) -> np.ndarray:
  """Canny edges of a uint8 [H, W] image, black lines on white (pix2pix).

  Returns:
    uint8 [H, W]: 0 on edges, 255 elsewhere, like edges2shoes.
  """
  from skimage import feature  # Imported lazily: slow to import.
  edges = feature.canny(image.astype(np.float32) / 255.0, sigma=sigma)
  return np.where(edges, 0, 255).astype(np.uint8)


def _cache_path(name: str, args: dict) -> str:
  key = json.dumps(dict(args, version=_CACHE_VERSION), sort_keys=True)
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  return os.path.join(cache_dir(), f'{name}-{digest}.npz')


def _load_npz(path: str) -> dict[str, np.ndarray] | None:
  """The cached arrays; None if missing or damaged (then recomputed)."""
  try:
    return npz.load(path, require_digest=True)
  except FileNotFoundError:
    return None
  except (npz.DamagedFile, OSError) as e:
    print(f'gcjax: cache file {path} cannot be used '
          f'({getattr(e, "reason", e)}); rebuilding it', file=sys.stderr)
    return None


def load_edges2fashion(
    split: str = 'train',
    resolution: int = 32,
    channels: int = 1,
    classes: Sequence[int] = SHOE_CLASSES,
    edge: str = 'canny',
    canny_sigma: float | None = None,
    limit: int = -1,
    root: str = FASHION_ROOT,
    use_cache: bool = True,
) -> dict[str, np.ndarray]:
  """Builds edges->image pairs from Fashion-MNIST (a small edges2shoes).

  The default classes (sandal, sneaker, ankle boot) are the "shoes". The
  image is resized bicubic to `resolution`, then Canny runs on the resized
  image. Results are cached as npz in `cache_dir()`, keyed by all arguments.

  Args:
    split: 'train' or 'test'.
    resolution: output side in pixels.
    channels: 1, or 3 (gray repeated).
    classes: Fashion-MNIST class ids to keep.
    edge: edge detector; only 'canny'.
    canny_sigma: Gaussian sigma of Canny; None uses resolution / 32.
    limit: keep only the first `limit` pairs (-1 keeps all).
    root: Fashion-MNIST folder.
    use_cache: read and write the npz cache.

  Returns:
    dict(src=uint8 [N, R, R, C] edge map, black lines on white as in
    edges2shoes; tgt=uint8 [N, R, R, C] image, bright object on black as in
    Fashion-MNIST; label=int32 [N]).
  """
  _check_split(split)
  if edge != 'canny':
    raise ValueError(f"edge must be 'canny', got {edge!r}")
  if canny_sigma is None:
    canny_sigma = default_canny_sigma(resolution)
  classes = tuple(int(c) for c in classes)
  args = dict(split=split, resolution=resolution, channels=channels,
              classes=classes, edge=edge, canny_sigma=float(canny_sigma),
              limit=limit, root=os.path.abspath(root))
  path = _cache_path('edges2fashion', args)
  if use_cache and (cached := _load_npz(path)) is not None:
    return cached
  images, labels = load_fashion_mnist(split, root)
  images, labels = _select(images, labels, classes, limit)
  tgt = np.zeros((len(images), resolution, resolution), np.uint8)
  src = np.zeros_like(tgt)
  for i, im in enumerate(images):
    tgt[i] = resize(im, resolution)
    src[i] = edge_map(tgt[i], canny_sigma)
  out = dict(src=_to_channels(src, channels), tgt=_to_channels(tgt, channels),
             label=labels)
  if use_cache:
    npz.save_atomic(path, out, digest=True)
  return out


def _sklearn_sample(name: str) -> np.ndarray:
  """scikit-learn's sample JPEG, read directly (sklearn.datasets is slow)."""
  spec = importlib.util.find_spec('sklearn')
  for folder in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(folder, 'datasets', 'images', name)
    if os.path.isfile(path):
      with Image.open(path) as image:
        return np.asarray(image.convert('RGB'))
  from sklearn.datasets import load_sample_image
  return load_sample_image(name)


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
  """Loads one bundled color photo as read-only uint8 [H, W, 3] (cached)."""
  if name.endswith('.jpg'):
    image = _sklearn_sample(name)
  else:
    import skimage.data
    try:
      image = getattr(skimage.data, name)()
    except Exception as e:  # Missing file or an optional dependency.
      raise RuntimeError(
          f'scikit-image sample photo {name!r} is not available offline '
          f'({type(e).__name__}: {e}); install scikit-image>=0.21') from e
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disp).
      image = image[0]
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'photo {name!r}: expected uint8 [H, W, 3], got '
                     f'{image.dtype} {image.shape}')
  image.setflags(write=False)
  return image


def load_photos(
    split: str = 'train',
    resolution: int = 64,
    crops_per_image: int = 64,
    seed: int = 0,
    min_crop: float = 0.25,
    max_crop: float = 0.6,
) -> dict[str, np.ndarray]:
  """Random square crops of the photos bundled with scikit-image/-learn.

  'train' crops come from TRAIN_PHOTOS and 'test' crops from TEST_PHOTOS,
  whole photos apart. The crop side is drawn uniformly in
  [min_crop, max_crop] x the photo's shorter side, the position uniformly;
  crops are resized bicubic. The result depends only on the arguments.

  Args:
    split: 'train' or 'test'.
    resolution: output side in pixels.
    crops_per_image: crops taken from each photo.
    seed: crop seed.
    min_crop: smallest crop side as a fraction of the shorter photo side.
    max_crop: largest crop side as a fraction of the shorter photo side.

  Returns:
    dict(src=uint8 [P * crops_per_image, R, R, 3], label=int32 photo index
    within the split's photo list).
  """
  _check_split(split)
  if not 0 < min_crop <= max_crop <= 1:
    raise ValueError('need 0 < min_crop <= max_crop <= 1, got '
                     f'{min_crop}, {max_crop}')
  names = TRAIN_PHOTOS if split == 'train' else TEST_PHOTOS
  split_id = _SPLITS.index(split)
  crops, labels = [], []
  for index, name in enumerate(names):
    photo = Image.fromarray(_photo(name))
    width, height = photo.size
    rng = np.random.default_rng([seed, split_id, index])
    short = min(width, height)
    sides = rng.uniform(min_crop, max_crop, crops_per_image) * short
    for side in np.maximum(sides.astype(int), 1):
      x = int(rng.integers(0, width - side + 1))
      y = int(rng.integers(0, height - side + 1))
      crop = photo.resize((resolution, resolution), Image.Resampling.BICUBIC,
                          box=(x, y, x + side, y + side))
      crops.append(np.asarray(crop))
      labels.append(index)
  return dict(src=np.stack(crops) if crops else
              np.zeros((0, resolution, resolution, 3), np.uint8),
              label=np.asarray(labels, np.int32))

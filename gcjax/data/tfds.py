"""Reads prepared tensorflow-datasets (TFDS) data sets into uint8 arrays.

This reader works without TensorFlow: it uses TFDS's random-access data
sources, which need the data set prepared in the `array_record` file format
(`tfds build NAME --file_format=array_record`, on a machine with TensorFlow
and network access, then copy `data_dir`). A data set prepared as `tfrecord`
(TFDS's default) is read through `tf.data` only when TensorFlow is importable.
Nothing is downloaded: a missing data set is an error.

tensorflow-datasets is imported lazily, so gcjax works without it
(`pip install gcjax[tfds]` adds it).

Catalog names for the papers' sets: `cycle_gan/horse2zebra` (splits
trainA/trainB/testA/testB, feature 'image'), `cityscapes`, `celeb_a`. The
pix2pix sets (edges2shoes, facades, maps) are not in the TFDS catalog: read
their original aligned files with `gcjax.data.folders.load_paired_folder`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from PIL import Image

_INSTALL = 'pip install gcjax[tfds]  (tensorflow-datasets and array-record)'


def import_tfds() -> Any:
  """Imports tensorflow_datasets, or raises an ImportError saying how."""
  try:
    import tensorflow_datasets
  except ImportError as e:
    raise ImportError(f'reading TFDS data sets needs tensorflow-datasets: '
                      f'{_INSTALL}') from e
  return tensorflow_datasets


def _feature(example: Mapping[str, Any], key: str) -> Any:
  """Looks up `key` in a (possibly nested) example; 'a/b' reads a['b']."""
  value: Any = example
  for part in key.split('/'):
    if not isinstance(value, Mapping) or part not in value:
      have = sorted(value) if isinstance(value, Mapping) else type(value)
      raise KeyError(f'feature {key!r} not in example (has {have})')
    value = value[part]
  return value


def _image(value: Any, key: str, resolution: int,
           channels: int | None) -> np.ndarray:
  """uint8 [H, W(, C)] -> uint8 [R, R, C] resized bicubic."""
  image = np.asarray(value)
  if image.dtype != np.uint8:
    raise ValueError(f'feature {key!r}: expected a uint8 image, got '
                     f'{image.dtype} {image.shape}')
  if image.ndim == 2:
    image = image[..., None]
  if channels is not None:
    if image.shape[-1] == 1 and channels == 3:
      image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] == 4 and channels == 3:
      image = image[..., :3]  # Drop alpha.
    elif image.shape[-1] == 3 and channels == 1:
      image = np.asarray(Image.fromarray(image).convert('L'))[..., None]
    if image.shape[-1] != channels:
      raise ValueError(f'feature {key!r}: cannot make {channels} channels '
                       f'from shape {image.shape}')
  if image.shape[:2] != (resolution, resolution):
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    pil = pil.resize((resolution, resolution), Image.Resampling.BICUBIC)
    image = np.asarray(pil).reshape(resolution, resolution, -1)
  return image


def _examples(builder: Any, split: str, limit: int) -> Iterable[Mapping]:
  """Yields decoded numpy examples of one split, in stored order."""
  tfds = import_tfds()
  file_format = str(getattr(builder.info.file_format, 'value',
                            builder.info.file_format))
  if file_format == 'array_record':
    try:
      import array_record  # noqa: F401
    except ImportError as e:
      raise ImportError(f'array_record data sets need array-record: '
                        f'{_INSTALL}') from e
    source = builder.as_data_source(split=split)
    n = len(source) if limit < 0 else min(limit, len(source))
    for start in range(0, n, 256):
      yield from source.__getitems__(list(range(start, min(start + 256, n))))
    return
  try:
    import tensorflow  # noqa: F401
  except ImportError as e:
    raise ImportError(
        f'{builder.name} is stored as {file_format}, which only TensorFlow '
        'reads. Prepare it as array_record (`tfds build NAME '
        '--file_format=array_record`, or `tfds convert_format`) or install '
        'tensorflow.') from e
  ds = builder.as_dataset(split=split, shuffle_files=False)
  if limit >= 0:
    ds = ds.take(limit)
  yield from tfds.as_numpy(ds)


def load_tfds(
    name: str,
    split: str,
    keys: Mapping[str, str],
    resolution: int,
    data_dir: str | None = None,
    limit: int = -1,
    channels: int | None = 3,
) -> dict[str, np.ndarray]:
  """Reads a prepared TFDS data set into arrays, without downloading.

  Args:
    name: TFDS name with config, e.g. 'cycle_gan/horse2zebra'.
    split: TFDS split, e.g. 'trainA' or 'train[:10%]'.
    keys: output key -> feature key ('a/b' for nested features), e.g.
      {'src': 'input_image', 'tgt': 'target_image'}.
    resolution: images are resized bicubic to this square side.
    data_dir: TFDS data folder (None: TFDS's default, ~/tensorflow_datasets).
    limit: read only the first `limit` examples (-1 reads all).
    channels: 3 (gray repeated, alpha dropped), 1 (luma), or None (as
      stored).

  Returns:
    One array per output key: images as uint8 [N, R, R, C]; non-image
    features (e.g. labels) stacked as stored.

  Raises:
    ImportError: tensorflow-datasets is missing (`pip install gcjax[tfds]`).
    FileNotFoundError: the data set is not prepared in `data_dir`.
  """
  if not keys:
    raise ValueError('keys must map at least one output key to a feature')
  tfds = import_tfds()
  data_dir = data_dir or None  # '' (a config's "unset") -> TFDS default.
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # DatasetNotFoundError and friends.
    raise FileNotFoundError(
        f'TFDS data set {name!r} not found in data_dir={data_dir!r}: '
        f'{str(e).splitlines()[0]} (pix2pix sets such as edges2shoes are '
        "not in the TFDS catalog: read them with 'paired_folder')") from e
  if not builder.is_prepared():
    raise FileNotFoundError(
        f'TFDS data set {name!r} is not prepared in '
        f'{builder.data_dir}. gcjax never downloads: prepare it elsewhere '
        f'with `tfds build {name} --file_format=array_record` and copy it.')
  columns: dict[str, list] = {k: [] for k in keys}
  for example in _examples(builder, split, limit):
    for out_key, feature_key in keys.items():
      value = np.asarray(_feature(example, feature_key))
      if value.ndim >= 2:
        value = _image(value, feature_key, resolution, channels)
      columns[out_key].append(value)
  if not next(iter(columns.values())):
    raise ValueError(f'TFDS {name!r} split {split!r} is empty')
  return {k: np.stack(v) for k, v in columns.items()}


def load_tfds_unpaired(
    name: str,
    split: str,
    resolution: int,
    data_dir: str | None = None,
    limit: int = -1,
    feature: str = 'image',
) -> dict[str, np.ndarray]:
  """Reads a CycleGAN-style TFDS set (splits {split}A, {split}B).

  Returns:
    dict(a=uint8 [N_a, R, R, 3], b=uint8 [N_b, R, R, 3]).
  """
  return dict(
      a=load_tfds(name, f'{split}A', {'a': feature}, resolution, data_dir,
                  limit)['a'],
      b=load_tfds(name, f'{split}B', {'b': feature}, resolution, data_dir,
                  limit)['b'])

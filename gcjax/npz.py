"""Atomic, digest-checked ``.npz`` files: the one writer and reader of flat
array dicts.

`save_atomic` writes to a temporary file in the destination's folder and
renames it over the destination with ``os.replace``, so a reader (or a
concurrent writer) sees either the old file or the complete new one, never a
partial file; on any error the temporary file is removed. With
``digest=True`` it also records the SHA-256 of the arrays (keys, dtypes,
shapes and bytes) in a sidecar ``<path>.sha256`` (``<hex>  <name>``); `load`
checks a recorded digest, so a truncated or changed cache file is never
used silently (it raises `DamagedFile`, and cache owners rebuild the file).

The digest covers the arrays, not the zip bytes, so it is the same for every
rewrite of the same content: two processes rebuilding one cache file at once
cannot leave a sidecar that disagrees with a correct file. Readers that do
not know sidecars (older gcjax versions sharing the cache) are unaffected.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
from typing import Mapping

import numpy as np

from gcjax import errors

DIGEST_SUFFIX = '.sha256'
# (resolved path, size, mtime_ns, sidecar mtime_ns) of files that matched.
_VERIFIED: set[tuple[str, int, int, int]] = set()


class DamagedFile(errors.UserError):
  """An ``.npz`` that cannot be read, lacks a required digest or fails it."""

  def __init__(self, path, reason: str):
    super().__init__(f'{path}: {reason}')
    self.path, self.reason = str(path), reason


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
  """Hex SHA-256 over sorted keys, dtypes, shapes and C-order bytes."""
  h = hashlib.sha256()
  for k in sorted(arrays):
    a = np.ascontiguousarray(arrays[k])
    h.update(f'{k}\0{a.dtype.str}\0{a.shape}\0'.encode())
    h.update(a.data)
  return h.hexdigest()


def save_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                *, digest: bool = False) -> None:
  """Writes `arrays` to the ``.npz`` file `path`, atomically.

  The parent folder is created if missing; the file gets mode 0644 (not the
  owner-only mode of ``mkstemp``). No suffix is added to `path`.

  Args:
    path: destination file.
    arrays: ``{key: array}``; keys may contain '/'.
    digest: also record `arrays_sha256` in ``<path>.sha256`` (written
      after the ``.npz``, also atomically), which `load` checks.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  out = {k: np.asarray(v) for k, v in arrays.items()}
  _write_atomic(path, lambda f: np.savez(f, **out))
  if digest:
    line = f'{arrays_sha256(out)}  {path.name}\n'.encode()
    _write_atomic(digest_path(path), lambda f: f.write(line))
  elif digest_path(path).exists():
    digest_path(path).unlink()   # it described the file just replaced


def digest_path(path: str | os.PathLike) -> pathlib.Path:
  """The sidecar that records the arrays' SHA-256 of ``path``."""
  return pathlib.Path(str(path) + DIGEST_SUFFIX)


def _write_atomic(path: pathlib.Path, write) -> None:
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.',
                             suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def load(path: str | os.PathLike, *, require_digest: bool = False
         ) -> dict[str, np.ndarray]:
  """Every array of an ``.npz`` file, read eagerly (pickles refused).

  A digest recorded by ``save_atomic(..., digest=True)`` is checked (once
  per process while the file's size and mtime stay the same).

  Args:
    path: the file.
    require_digest: a file without a recorded digest counts as damaged
      (for caches, which are always written with one).

  Raises:
    FileNotFoundError: no such file.
    DamagedFile: the file is not a readable ``.npz`` (truncated, not a zip,
      bad CRC, object arrays), has no digest when one is required, or its
      arrays differ from the recorded digest.
  """
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except (FileNotFoundError, IsADirectoryError, PermissionError):
    raise
  except Exception as e:  # noqa: BLE001 - zipfile/numpy/zlib errors vary.
    raise DamagedFile(path, f'cannot be read ({type(e).__name__}: '
                      f'{" ".join(str(e).split())[:120]})') from None
  side = digest_path(path)
  if not side.is_file():
    if require_digest:
      raise DamagedFile(path, f'has no recorded digest ({side.name})')
    return arrays
  try:
    recorded = side.read_text().split()[0]
  except (OSError, UnicodeDecodeError, IndexError):
    raise DamagedFile(path, f'its digest record {side.name} is unreadable'
                      ) from None
  st, sst = os.stat(path), side.stat()
  memo = (str(pathlib.Path(path).resolve()), st.st_size, st.st_mtime_ns,
          sst.st_mtime_ns)
  if memo not in _VERIFIED:
    if recorded != arrays_sha256(arrays):
      raise DamagedFile(path, 'its arrays do not match the recorded SHA-256 '
                        '(changed or damaged)')
    _VERIFIED.add(memo)
  return arrays

"""Atomic ``.npz`` files: the one writer (and reader) of flat array dicts.

`save_atomic` writes to a temporary file in the destination's folder and
renames it over the destination with ``os.replace``, so a reader (or a
concurrent writer) sees either the old file or the complete new one, never a
partial file; on any error the temporary file is removed.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Mapping

import numpy as np


def save_atomic(path: str | os.PathLike,
                arrays: Mapping[str, np.ndarray]) -> None:
  """Writes `arrays` to the ``.npz`` file `path`, atomically.

  The parent folder is created if missing; the file gets mode 0644 (not the
  owner-only mode of ``mkstemp``). No suffix is added to `path`.

  Args:
    path: destination file.
    arrays: ``{key: array}``; keys may contain '/'.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.',
                             suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Every array of an ``.npz`` file, read eagerly (pickles refused)."""
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}

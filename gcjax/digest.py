"""SHA-256 records of directory trees: written after a save, checked on read.

Orbax checksums neither array data nor metadata, so a checkpoint truncated
by a full disk, a bad copy or a sync tool restores garbage or fails deep
inside tensorstore. After a checkpoint is complete, `write_record` stores the
size and SHA-256 of every file below it in ``RECORD`` (written atomically
inside the same directory, so it moves and is deleted with it); `check`
returns why a tree no longer matches its record, or None.

Files are hashed in parallel threads (``hashlib`` releases the GIL), in
1 MiB blocks.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import tempfile

RECORD = 'gcjax_sha256.json'
_BLOCK = 1 << 20


class NoRecord(Exception):
  """The directory has no digest record (written before records existed,
  or the writer stopped between finishing the data and the record)."""


def sha256_file(path: str | os.PathLike) -> str:
  """Hex SHA-256 of a file."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(_BLOCK), b''):
      h.update(block)
  return h.hexdigest()


def _files(root: str) -> list[str]:
  """Paths of the regular files below ``root``, relative, '/'-separated."""
  out = []
  for d, _, names in os.walk(root):
    for n in names:
      rel = os.path.relpath(os.path.join(d, n), root).replace(os.sep, '/')
      if rel != RECORD and not rel.startswith(RECORD + '.'):
        out.append(rel)
  return sorted(out)


def _hash_all(root: str, rels: list[str]) -> dict[str, str]:
  workers = min(8, os.cpu_count() or 1, max(1, len(rels)))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    sums = pool.map(lambda r: sha256_file(os.path.join(root, r)), rels)
    return dict(zip(rels, sums))


def tree_digests(root: str) -> dict[str, list]:
  """``{relative path: [sha256 hex, size in bytes]}`` of every file."""
  rels = _files(root)
  sums = _hash_all(root, rels)
  return {r: [sums[r], os.path.getsize(os.path.join(root, r))] for r in rels}


def write_record(root: str) -> None:
  """Hashes every file below ``root`` and writes ``root/RECORD`` atomically.

  Raises:
    OSError: the record cannot be written (e.g. ENOSPC); no partial record
      is left behind.
  """
  body = json.dumps({'version': 1, 'files': tree_digests(root)}, indent=0,
                    sort_keys=True)
  fd, tmp = tempfile.mkstemp(dir=root, prefix=RECORD + '.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(body)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, RECORD))
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def check(root: str) -> str | None:
  """Why the files below ``root`` differ from its record; None if intact.

  Files not named in the record are ignored. The reason names the first
  damaged file: missing, of another size (truncated or grown), or with
  another SHA-256 (bytes changed).

  Raises:
    NoRecord: ``root`` has no record.
  """
  path = os.path.join(root, RECORD)
  if not os.path.isfile(path):
    raise NoRecord(root)
  try:
    with open(path) as f:
      files = json.load(f)['files']
    files = {str(k): (str(v[0]), int(v[1])) for k, v in files.items()}
  except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
    return f'its digest record {RECORD} is unreadable ({type(e).__name__})'
  for rel, (_, size) in sorted(files.items()):
    full = os.path.join(root, rel)
    if not os.path.isfile(full):
      return f'{rel} is missing'
    got = os.path.getsize(full)
    if got != size:
      return (f'{rel} has {got} bytes, {size} were written'
              f'{" (truncated)" if got < size else ""}')
  sums = _hash_all(root, sorted(files))
  for rel, (want, _) in sorted(files.items()):
    if sums[rel] != want:
      return f'{rel} does not match its recorded SHA-256 (bytes changed)'
  return None

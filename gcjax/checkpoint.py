"""Orbax checkpointing of the train state: atomic, verified saves; restore
of the newest intact step.

Each finished save gets a SHA-256 record of its files (`gcjax.digest`),
checked before a restore. A damaged step (truncated, changed or missing
file, unreadable metadata) is set aside as ``<step>.corrupt-<time>`` (never
deleted) and the next newer intact step is restored; if none is intact,
nothing is touched and the restore fails with one line. A save that fails
for lack of space or permission removes its partial files and raises
`CheckpointWriteError`, leaving the previous step the newest one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
import time
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from etils import epath

from gcjax import digest, errors

TMP_SUFFIX = '.orbax-checkpoint-tmp'
# The streaming input's iterator state (grain's orbax handler: one JSON file
# per process) lives in this item of the same step, under the same digest.
DATA_ITEM = 'data'
CORRUPT_MARK = '.corrupt-'
# errno -> what the save failure line says.
_DISK_ERRNOS = {
    errno.ENOSPC: 'no space left on device',
    errno.EDQUOT: 'disk quota exceeded',
    errno.EACCES: 'permission denied',
    errno.EPERM: 'operation not permitted',
    errno.EROFS: 'read-only file system',
}
# The same conditions as tensorstore (C++) words them.
_DISK_TEXTS = {
    'No space left on device': 'no space left on device',
    'Disk quota exceeded': 'disk quota exceeded',
    'Permission denied': 'permission denied',
    'Read-only file system': 'read-only file system',
}


class CheckpointWriteError(errors.UserError):
  """A save failed for lack of disk space or permission; the previous
  checkpoint is intact."""


class Restored(NamedTuple):
  """What `Checkpointer.restore_latest` found."""
  step: int
  state: Any
  meta: dict[str, Any]
  verified: bool          # False: written without a digest record
  set_aside: list[tuple[int, str, str]]  # (step, reason, new directory)


class _Damaged(Exception):
  """A step cannot be read back; ``reason`` says why, in one line."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


def _one_line(e: BaseException, limit: int = 240) -> str:
  """The most telling line of an orbax/tensorstore error, shortened."""
  text = ' '.join(str(e).split()) or type(e).__name__
  text = text.split(' See full TensorStore details')[0]
  for key in ('DATA_LOSS', 'OUT_OF_RANGE', 'NOT_FOUND', 'Error reading',
              'Error opening', 'Expecting', 'Unterminated'):
    i = text.find(key)
    if i >= 0:
      text = text[i:]
      break
  return text[:limit]


class Checkpointer:
  """Saves ``(state, meta)`` pairs under ``directory``; resumes the latest.

  Orbax writes each step into a temporary directory and renames it when the
  save is complete, so a save interrupted by a crash is never listed as a
  step and never restored.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=False)
    self._mgr = ocp.CheckpointManager(
        self.directory, options=options,
        item_names=('state', 'meta', DATA_ITEM))
    self._failed = False

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mgr.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(int(step)))

  def save(self, step: int, state: Any, meta: dict[str, Any],
           data: Any = None) -> None:
    """Writes ``step`` and then its digest record (process 0).

    ``data``, if given, is an input iterator with grain's
    ``get_state() -> bytes`` (e.g. `gcjax.data.streaming.Streamer`); its
    state is saved in the same step.

    Raises:
      CheckpointWriteError: the disk is full, over quota, read-only or not
        writable. Files of this step are removed; earlier steps are intact.
    """
    step = int(step)
    try:
      with _quiet_disk_errors():
        items = dict(state=ocp.args.StandardSave(state),
                     meta=ocp.args.JsonSave(meta))
        if data is not None:
          items[DATA_ITEM] = _grain().PyGrainCheckpointSave(data)
        self._mgr.save(step, args=ocp.args.Composite(**items), force=True)
        self._mgr.wait_until_finished()
      if jax.process_index() == 0:
        digest.write_record(self.step_dir(step))
    except Exception as e:  # noqa: BLE001 - only disk conditions are ours.
      cause = _disk_condition(e)
      if cause is None:
        raise
      self._failed = True
      self._discard(step)
      raise CheckpointWriteError(self._write_failure(step, state, cause)
                                 ) from e

  def _discard(self, step: int) -> None:
    """Removes the partial (or unrecorded) files of a failed save."""
    with _quiet_disk_errors():
      try:  # Let orbax's writer threads stop before cleaning up.
        self._mgr.wait_until_finished()
      except Exception:  # noqa: BLE001 - the same failure again.
        pass
      for t in threading.enumerate():
        if (t is not threading.current_thread() and
            type(t).__module__.startswith('orbax')):
          t.join(timeout=60)
    if jax.process_index() == 0:
      for name in os.listdir(self.directory):
        if name == str(step) or name.startswith(f'{step}{TMP_SUFFIX}'):
          shutil.rmtree(os.path.join(self.directory, name),
                        ignore_errors=True)
    try:
      self._mgr.reload()
    except Exception:  # noqa: BLE001 - the run stops anyway.
      pass

  def _write_failure(self, step: int, state: Any, cause: str) -> str:
    """The one line of a failed save: directory, bytes needed and free."""
    prev = [s for s in self.all_steps() if s < step]
    if prev:
      needed = _dir_bytes(self.step_dir(max(prev)))
    else:
      needed = sum(int(getattr(x, 'nbytes', 0)) for x in
                   jax.tree.leaves(state))
    try:
      free = shutil.disk_usage(self.directory).free
    except OSError:
      free = -1
    free_s = f'{free:,} bytes are free there' if free >= 0 else (
        'free space unknown')
    keep = (f'The previous checkpoint (step {max(prev)}) is intact and '
            'rerunning the same command resumes from it.' if prev else
            'No earlier checkpoint exists.')
    return (f'Cannot save checkpoint {step} in {self.directory}: {cause}. '
            f'A checkpoint needs about {needed:,} bytes '
            f'({needed / 2**20:.1f} MiB); {free_s}. Training stopped. '
            f'{keep} Free space or fix permissions, then rerun.')

  def restore_latest(self, abstract_state: Any, shardings: Any,
                     data: Any = None) -> Restored | None:
    """Restores the newest intact step; None if there is no step at all.

    Damaged newer steps are renamed to ``<step>.corrupt-<time>`` (process
    0) once an intact one has been read; `Restored.set_aside` lists them.

    ``data`` (see `save`) gets ``set_state`` of the step's input state;
    a step saved without one while ``data`` is given is refused (the run
    could not continue its input where it stopped).

    Raises:
      errors.UserError: no step is intact (nothing is renamed; the line
        names each step and why), or the newest readable step belongs to
        another config.
    """
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      return None
    bad: list[tuple[int, str]] = []
    for step in steps:
      try:
        state, meta, verified = self._restore_checked(
            step, abstract_state, shardings, data)
      except _Damaged as e:
        bad.append((step, e.reason))
        continue
      return Restored(step, state, meta, verified, self._set_aside(bad))
    listing = '; '.join(f'step {s}: {r}' for s, r in bad)
    raise errors.UserError(
        f'No intact checkpoint in {self.directory} ({listing}). Nothing '
        'was moved or deleted. Move the damaged step directories elsewhere '
        'to start from scratch, or use a fresh --workdir.')

  def _set_aside(self, bad: list[tuple[int, str]]
                 ) -> list[tuple[int, str, str]]:
    """Renames damaged steps ``<step>.corrupt-<time>`` (never deletes)."""
    if not bad:
      return []
    stamp = time.strftime('%Y%m%d-%H%M%S')
    moved = []
    for step, reason in bad:
      dest = f'{self.step_dir(step)}{CORRUPT_MARK}{stamp}'
      n = 1
      while os.path.exists(dest):
        n += 1
        dest = f'{self.step_dir(step)}{CORRUPT_MARK}{stamp}-{n}'
      if jax.process_index() == 0:
        os.rename(self.step_dir(step), dest)
      moved.append((step, reason, dest))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices('gcjax_ckpt_set_aside')
    self._mgr.reload()
    return moved

  def _restore_checked(self, step: int, abstract_state: Any, shardings: Any,
                       data: Any = None) -> tuple[Any, dict[str, Any], bool]:
    """(state, meta, verified) of ``step``.

    Raises:
      _Damaged: the files differ from their digest record, the metadata
        cannot be read, or (without a record) orbax cannot read the data.
      errors.UserError: the step holds another config's state.
    """
    where = self.step_dir(step)
    try:
      reason = digest.check(where)
      verified = True
    except digest.NoRecord:
      reason, verified = None, False
    if reason:
      raise _Damaged(reason)
    try:
      tree = ocp.PyTreeCheckpointHandler().metadata(
          epath.Path(where) / 'state').tree
    except Exception as e:  # noqa: BLE001 - any failure means unreadable.
      raise _Damaged(f'its metadata cannot be read ({_one_line(e)})'
                     ) from None
    _check_stored_shapes(tree, abstract_state, where)
    try:
      state, meta = self.restore(step, abstract_state, shardings, data)
    except errors.UserError:
      if verified:
        raise
      raise _Damaged('orbax cannot read it (no digest record to check)'
                     ) from None
    except Exception as e:  # noqa: BLE001 - unreadable data.
      raise _Damaged(f'orbax cannot read it ({_one_line(e)})') from None
    return state, meta, verified

  def restore(self, step: int, abstract_state: Any, shardings: Any,
              data: Any = None) -> tuple[Any, dict[str, Any]]:
    """Restores ``step`` into the structure/shardings of ``abstract_state``
    (and ``data``'s input state, see `restore_latest`).

    Raises:
      errors.UserError: the checkpoint does not fit the configured state
        (e.g. it was written by a run with another config); names the
        directory.
    """
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state, shardings)
    items = dict(state=ocp.args.StandardRestore(target),
                 meta=ocp.args.JsonRestore())
    if data is not None:
      if not os.path.isdir(os.path.join(self.step_dir(step), DATA_ITEM)):
        raise errors.UserError(
            f'Checkpoint {self.directory}/{step} holds no streaming-input '
            'state (it was written with data.streaming off); resume it with '
            'the same data.streaming, or use a fresh --workdir.')
      items[DATA_ITEM] = _grain().PyGrainCheckpointRestore(data)
    try:
      out = self._mgr.restore(int(step), args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      said = ' '.join(str(e).split())
      raise errors.UserError(
          f'Checkpoint {self.directory}/{step} does not match the state of '
          f'the current config (was it written with another config or '
          f'model size?). Use a fresh --workdir. Orbax said: '
          f'{said[:300]}') from e
    _check_shapes(out['state'], abstract_state, f'{self.directory}/{step}')
    return out['state'], out['meta']

  def close(self) -> None:
    try:
      self._mgr.wait_until_finished()
      self._mgr.close()
    except Exception:  # noqa: BLE001
      if not self._failed:
        raise


def _grain():
  """grain, imported only by runs that stream (its orbax handler)."""
  import grain.python as grain
  return grain


def _leaf_name(path) -> str:
  """'gen.params.conv.kernel' for a key path (orbax's leaf names)."""
  parts = []
  for k in path:
    for attr in ('name', 'key', 'idx'):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
  return '.'.join(parts)


def _dir_bytes(root: str) -> int:
  total = 0
  for d, _, names in os.walk(root):
    for n in names:
      try:
        total += os.path.getsize(os.path.join(d, n))
      except OSError:
        pass
  return total


def _disk_condition(e: BaseException) -> str | None:
  """'no space left on device' etc. if ``e`` (or its cause) is one."""
  seen = set()
  stack = [e]
  while stack:
    x = stack.pop()
    if x is None or id(x) in seen:
      continue
    seen.add(id(x))
    if isinstance(x, OSError) and x.errno in _DISK_ERRNOS:
      return f'{_DISK_ERRNOS[x.errno]} ({x})'
    for text, cause in _DISK_TEXTS.items():
      if text in str(x):
        return cause
    stack += [x.__cause__, x.__context__]
    stack += list(getattr(x, 'exceptions', ()))
  return None


class _DiskErrorFilter(logging.Filter):
  """Drops log records of a disk-full/permission failure (reported once,
  as `CheckpointWriteError`, instead of as orbax thread tracebacks)."""

  def filter(self, record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return exc is None or _disk_condition(exc) is None


@contextlib.contextmanager
def _quiet_disk_errors():
  logger, f = logging.getLogger('absl'), _DiskErrorFilter()
  logger.addFilter(f)
  try:
    yield
  finally:
    logger.removeFilter(f)


def _check_stored_shapes(tree, abstract, where: str) -> None:
  """Names the first leaf that is missing, extra or of another shape."""
  stored = {_leaf_name(p): tuple(m.shape) for p, m in
            jax.tree_util.tree_flatten_with_path(tree)[0]}
  wanted = {_leaf_name(p): tuple(a.shape) for p, a in
            jax.tree_util.tree_flatten_with_path(abstract)[0]}
  for name, shape in wanted.items():
    if name not in stored:
      raise errors.UserError(
          f'Checkpoint {where} has no {name} (shape {shape}) that the '
          'current config needs. Use a fresh --workdir for a different '
          'config.')
    if stored[name] != shape:
      raise errors.UserError(
          f'Checkpoint {where}: {name} has shape {stored[name]}, the '
          f'current config expects {shape}. Use a fresh --workdir for a '
          'different config.')


def _check_shapes(restored, abstract, where: str) -> None:
  flat_r = jax.tree_util.tree_flatten_with_path(restored)[0]
  flat_a = jax.tree.leaves(abstract)
  for (path, r), a in zip(flat_r, flat_a):
    if tuple(r.shape) != tuple(a.shape):
      raise errors.UserError(
          f'Checkpoint {where}: {jax.tree_util.keystr(path)} has shape '
          f'{tuple(r.shape)}, the current config expects {tuple(a.shape)}. '
          'Use a fresh --workdir for a different config.')

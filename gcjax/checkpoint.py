"""Orbax checkpointing of the train state: atomic saves, latest-step restore."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from gcjax import errors


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
        self.directory, options=options, item_names=('state', 'meta'))

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mgr.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    self._mgr.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta)),
        force=True)
    self._mgr.wait_until_finished()

  def restore(self, step: int, abstract_state: Any,
              shardings: Any) -> tuple[Any, dict[str, Any]]:
    """Restores ``step`` into the structure/shardings of ``abstract_state``.

    Raises:
      errors.UserError: the checkpoint does not fit the configured state
        (e.g. it was written by a run with another config); names the
        directory.
    """
    where = f'{self.directory}/{step}'
    _check_stored_shapes(os.path.join(self.directory, str(step), 'state'),
                         abstract_state, where)
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state, shardings)
    try:
      out = self._mgr.restore(
          int(step),
          args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                  meta=ocp.args.JsonRestore()))
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
    self._mgr.wait_until_finished()
    self._mgr.close()


def _leaf_name(path) -> str:
  """'gen.params.conv.kernel' for a key path (orbax's leaf names)."""
  parts = []
  for k in path:
    for attr in ('name', 'key', 'idx'):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
  return '.'.join(parts)


def _check_stored_shapes(item_dir: str, abstract, where: str) -> None:
  """Names the first leaf whose stored shape differs from the config's.

  Reads only the checkpoint's metadata; if that cannot be read, the
  restore itself reports the problem.
  """
  try:
    tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(item_dir)).tree
    stored = {_leaf_name(p): tuple(m.shape) for p, m in
              jax.tree_util.tree_flatten_with_path(tree)[0]}
  except Exception:  # noqa: BLE001 - fall back to orbax's own errors.
    return
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

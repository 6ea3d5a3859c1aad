"""Runs a config needs before its own: a teacher trained first.

A config whose ``teacher`` section has a ``train`` key names there the
config of the run that makes its teacher (``configs/kdit_teacher.py``,
optionally ``:preset``). When ``teacher.init`` is empty (and
``teacher.random`` is off), :func:`teacher_first` trains that config in
``<workdir>/teacher`` (the section's ``train_steps`` > 0 overrides its
``total_steps``) and points ``teacher.init`` at it
(``run:<workdir>/teacher``). A finished teacher run (one with an export) is
reused; an interrupted one resumes from its checkpoint, so re-running the
same command never trains the teacher twice.

Called by ``train.run`` only (the one module that runs things and writes
files); configs without ``teacher.train`` pass through unchanged.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from typing import Callable

import ml_collections

from gcjax import errors

TEACHER_DIR = 'teacher'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str, key: str) -> ml_collections.ConfigDict:
  """``path/to/config.py[:arg]`` -> its ``get_config(arg)``.

  A relative path is looked up from the working directory, then from the
  repository root. ``key`` names the config field in errors.
  """
  path, _, arg = spec.partition(':')
  found = next((p for p in (path, os.path.join(REPO, path))
                if os.path.isfile(p)), None)
  if not path.endswith('.py') or found is None:
    raise errors.UserError(f'config.{key}={spec!r}: expected a config file '
                           '(e.g. configs/kdit_teacher.py[:smoke]); no such '
                           'file')
  name = 'gcjax_chain_' + os.path.splitext(os.path.basename(found))[0]
  mod_spec = importlib.util.spec_from_file_location(name, found)
  module = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def needs_teacher(config) -> bool:
  """Whether :func:`teacher_first` would train a teacher for ``config``."""
  if 'teacher' not in config or 'train' not in config.teacher:
    return False
  t = config.teacher
  return bool(t.train) and not t.init and not ('random' in t and t.random)


def teacher_first(config: ml_collections.ConfigDict, workdir: str,
                  run: Callable[[ml_collections.ConfigDict, str], dict]
                  ) -> ml_collections.ConfigDict:
  """``config`` with ``teacher.init`` filled by a teacher run if needed.

  Args:
    config: the run's config (not modified; a changed copy is returned).
    workdir: the run's workdir; the teacher goes to ``<workdir>/teacher``.
    run: ``train.run``, called with the teacher's config and workdir.

  Returns:
    ``config`` itself when no teacher is to be trained, else a copy with
    ``teacher.init = 'run:<workdir>/teacher'``.
  """
  if not needs_teacher(config):
    return config
  t = config.teacher
  teacher_dir = os.path.join(workdir, TEACHER_DIR)
  if not os.path.isfile(os.path.join(teacher_dir, 'export', 'card.json')):
    tc = load_config(t.train, 'teacher.train')
    steps = int(t.train_steps)
    if steps < 0:
      raise errors.UserError(f'config.teacher.train_steps={steps}; expected '
                             '0 (the teacher config\'s own) or more')
    if steps:
      tc.total_steps = steps
    tc.lock()
    run(tc, teacher_dir)
  config = copy.deepcopy(config)
  config.teacher.init = f'run:{teacher_dir}'
  return config

"""Runs a config needs before its own: a teacher trained first.

A config whose ``teacher`` section has a ``train`` key says there how its
teacher is made: the teacher run's config itself (a ``ConfigDict``, e.g.
``configs/dcgan_teacher.py``'s, as the prune configs embed it) or a config
file ``path/to/config.py[:arg]`` (the KDIT configs); empty/None: never.
:func:`teacher_first` trains it, before the run that needs it, when

* ``teacher.init`` is ``run:<dir>[:<net>]`` and ``<dir>`` has no export yet:
  the teacher is trained in ``<dir>`` (the prune configs' default
  ``run:runs/dcgan_teacher``);
* ``teacher.init`` is empty (and ``teacher.random`` is off): the teacher is
  trained in ``<workdir>/teacher`` and ``teacher.init`` is pointed at it
  (the KDIT configs).

A section's ``train_steps`` > 0 overrides the teacher's ``total_steps``. A
finished teacher run (one with an export) is reused; an interrupted one
resumes from its checkpoint, so re-running the same command never trains the
teacher twice.

Called by ``train.run`` only (the one module that runs things and writes
files); configs without ``teacher.train`` pass through unchanged.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from typing import Callable

import ml_collections

from gcjax import errors, teachers

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


def _run_dir(spec: str) -> str:
  """``run:<dir>[:<net>]`` -> ``<dir>``."""
  path = spec[len('run:'):]
  if ':' in path and not os.path.exists(path):
    path = path.rpartition(':')[0]
  return path


def _finished(run_dir: str) -> bool:
  return any(os.path.isfile(os.path.join(d, teachers.CARD))
             for d in (os.path.join(run_dir, 'export'), run_dir))


def destination(config, workdir: str) -> str:
  """Where :func:`teacher_first` would train ``config``'s teacher; ''."""
  t = config.get('teacher')
  if t is None or not t.get('train'):
    return ''
  init = t.get('init', '')
  if init.startswith('run:'):
    path = _run_dir(init)
    return '' if _finished(path) else path
  if init or t.get('random', False):
    return ''
  path = os.path.join(workdir, TEACHER_DIR)
  return path


def needs_teacher(config, workdir: str = '') -> bool:
  """Whether :func:`teacher_first` would train a teacher for ``config``."""
  return bool(destination(config, workdir or '.'))


def _teacher_config(section) -> ml_collections.ConfigDict:
  if isinstance(section.train, ml_collections.ConfigDict):
    tc = copy.deepcopy(section.train)
    tc.unlock()
  else:
    tc = load_config(str(section.train), 'teacher.train')
  steps = int(section.get('train_steps', 0))
  if steps < 0:
    raise errors.UserError(f'config.teacher.train_steps={steps}; expected '
                           '0 (the teacher config\'s own) or more')
  if steps:
    tc.total_steps = steps
  tc.lock()
  return tc


def teacher_first(config: ml_collections.ConfigDict, workdir: str,
                  run: Callable[[ml_collections.ConfigDict, str], dict]
                  ) -> ml_collections.ConfigDict:
  """``config`` after its teacher has been trained, if it had to be.

  Args:
    config: the run's config (not modified; a changed copy is returned).
    workdir: the run's workdir (``<workdir>/teacher`` when ``teacher.init``
      is empty).
    run: ``train.run``, called with the teacher's config and workdir.

  Returns:
    ``config`` itself when ``teacher.init`` already names the teacher, else
    a copy with ``teacher.init = 'run:<workdir>/teacher'``.
  """
  path = destination(config, workdir)
  if not path:
    return config
  if not _finished(path):
    print(f'gcjax: no trained teacher at {path!r}: training '
          'config.teacher.train there first', file=sys.stderr)
    run(_teacher_config(config.teacher), path)
  if config.teacher.init:
    return config
  config = copy.deepcopy(config)
  config.teacher.init = f'run:{path}'
  return config

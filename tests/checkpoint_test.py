"""Damaged checkpoints and failed saves, on real files of a real smoke run.

A pix2pix_gan smoke run (6 steps, a checkpoint every 2) leaves steps 4 and
6. Each test copies that workdir, damages step 6 the way a full disk, a bad
copy or a sync tool would (truncated array file, one flipped byte, a missing
array file, unparsable metadata) and reruns the same command: the damaged
step is set aside as ``6.corrupt-<time>`` with one line naming it and the
reason, and the run resumes from step 4 to the same step-6 state. With both
steps damaged it stops with one line (exit 2) and touches nothing. A save
that hits ENOSPC (orbax's JSON writer patched to raise it) stops training
with one line and exit 2, leaving the previous step intact and resumable.
"""

import errno
import os
import shutil
import subprocess
import sys

import chex
import pytest
from subprocess_runs import ROOT, final_params, subprocess_env

from gcjax import digest

ARGS = ['--config=configs/pix2pix_gan.py:smoke', '--config.total_steps=6',
        '--config.ckpt_every=2']
# Runs gcjax.main with orbax's JSON writer failing from its second save on
# (the 'meta' item of checkpoint 4), as a full disk would.
ENOSPC_MAIN = f"""
import errno, runpy, sys
from orbax.checkpoint._src.handlers import json_checkpoint_handler as j
orig, calls = j.JsonCheckpointHandler._save_fn, []
async def full(self, x, directory):
  calls.append(directory)
  if len(calls) >= 2:
    raise OSError({errno.ENOSPC}, 'No space left on device', str(directory))
  return await orig(self, x, directory)
j.JsonCheckpointHandler._save_fn = full
sys.argv[0] = 'gcjax.main'
runpy.run_module('gcjax.main', run_name='__main__')
"""


def _run(workdir, env, main=('-m', 'gcjax.main')):
  return subprocess.run([sys.executable, *main, f'--workdir={workdir}',
                         *ARGS], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)


def _lines(stderr: str) -> list[str]:
  """stderr without the progress bar."""
  return [x for x in stderr.splitlines()
          if x.strip() and 'it/s' not in x and 's/it' not in x]


@pytest.fixture(scope='module')
def env():
  return subprocess_env(devices=8)


@pytest.fixture(scope='module')
def run6(tmp_path_factory, env):
  """A finished smoke run with checkpoints 4 and 6."""
  workdir = str(tmp_path_factory.mktemp('run6'))
  proc = _run(workdir, env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == [
      '4', '6']
  return workdir


def _copy(run6, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(run6, workdir)
  os.remove(os.path.join(workdir, 'results.json'))
  return workdir


def _largest_array_file(step_dir):
  files = []
  for d, _, names in os.walk(os.path.join(step_dir, 'state')):
    files += [os.path.join(d, n) for n in names if d.endswith('/d')]
  return max(files, key=os.path.getsize)


def _truncate(step_dir):
  path = _largest_array_file(step_dir)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip(step_dir):
  path = _largest_array_file(step_dir)
  data = bytearray(open(path, 'rb').read())
  data[len(data) // 2] ^= 0x10
  open(path, 'wb').write(bytes(data))


def _remove(step_dir):
  os.remove(_largest_array_file(step_dir))


def _bad_metadata(step_dir):
  with open(os.path.join(step_dir, 'state', '_METADATA'), 'w') as f:
    f.write('{"tree_metadata": ')


DAMAGE = {
    'truncated': (_truncate, 'truncated'),
    'byte_flip': (_flip, 'does not match its recorded SHA-256'),
    'missing_file': (_remove, 'is missing'),
    'metadata': (_bad_metadata, 'state/_METADATA has'),
}


@pytest.mark.parametrize('kind', sorted(DAMAGE))
def test_damaged_latest_is_set_aside_and_run_resumes(run6, env, tmp_path,
                                                     kind):
  workdir = _copy(run6, tmp_path)
  ckdir = os.path.join(workdir, 'checkpoints')
  damage, reason = DAMAGE[kind]
  damage(os.path.join(ckdir, '6'))
  proc = _run(workdir, env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  said = [x for x in _lines(proc.stderr) if 'is damaged' in x]
  assert len(said) == 1, proc.stderr[-3000:]
  assert f'{ckdir}/6 is damaged' in said[0] and reason in said[0]
  assert 'resumed from' in proc.stderr and 'at step 4' in proc.stderr
  # Set aside, never deleted: the damaged files are still there.
  aside = [n for n in os.listdir(ckdir) if n.startswith('6.corrupt-')]
  assert len(aside) == 1 and aside[0] in said[0]
  assert digest.check(os.path.join(ckdir, aside[0])) is not None
  # Resumed from 4, the run rebuilt step 6 exactly.
  assert digest.check(os.path.join(ckdir, '6')) is None
  step, got = final_params(workdir)
  _, want = final_params(run6)
  assert step == 6
  chex.assert_trees_all_equal(got, want)
  assert os.path.exists(os.path.join(workdir, 'results.json'))


def _snapshot(root):
  return {os.path.relpath(os.path.join(d, n), root):
          digest.sha256_file(os.path.join(d, n))
          for d, _, names in os.walk(root) for n in names}


def test_no_intact_checkpoint_is_one_line_and_touches_nothing(run6, env,
                                                              tmp_path):
  workdir = _copy(run6, tmp_path)
  ckdir = os.path.join(workdir, 'checkpoints')
  _truncate(os.path.join(ckdir, '6'))
  _flip(os.path.join(ckdir, '4'))
  before = _snapshot(workdir)
  proc = _run(workdir, env)
  assert proc.returncode == 2, proc.stderr[-3000:]
  err = _lines(proc.stderr)
  assert len(err) == 1, err
  assert err[0].startswith('gcjax.main: error: No intact checkpoint in '
                           f'{ckdir}')
  assert 'step 6:' in err[0] and 'step 4:' in err[0]
  assert _snapshot(workdir) == before


def test_enospc_during_save_stops_and_keeps_previous(env, tmp_path):
  workdir = str(tmp_path / 'full')
  ckdir = os.path.join(workdir, 'checkpoints')
  proc = _run(workdir, env, main=('-c', ENOSPC_MAIN))
  assert proc.returncode == 2, proc.stderr[-3000:]
  err = _lines(proc.stderr)
  assert len(err) == 1, err
  assert err[0].startswith(f'gcjax.main: error: Cannot save checkpoint 4 in '
                           f'{ckdir}: no space left on device')
  assert 'A checkpoint needs about ' in err[0] and ' bytes' in err[0]
  assert 'previous checkpoint (step 2) is intact' in err[0]
  # No partial step 4 (nor its temporary directory); step 2 verifies.
  assert os.listdir(ckdir) == ['2']
  assert digest.check(os.path.join(ckdir, '2')) is None
  assert not os.path.exists(os.path.join(workdir, 'results.json'))
  proc = _run(workdir, env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'at step 2' in proc.stderr
  assert final_params(workdir)[0] == 6

"""kill -9 at random moments (also mid-save), restart, same final state.

The pix2pix_gan smoke config (without evaluators) runs for 12 steps with a checkpoint after every
step, once uninterrupted and once killed with SIGKILL several times: right
after launch, while orbax writes a checkpoint (a ``*.orbax-checkpoint-tmp*``
directory exists) and at a random moment between steps; every restart runs
the same command. The final state must equal the uninterrupted one bitwise.
Subprocesses share the suite's persistent XLA compilation cache, so at most
the first compiles.
"""

import os
import random
import re
import shutil
import subprocess
import sys
import time

import chex
import pytest
from subprocess_runs import ROOT, final_params, no_evals_config, subprocess_env

from gcjax import checkpoint as ckpt_lib

STEPS = 12
TMP_MARK = '.orbax-checkpoint-tmp'
# (kind, seconds): 'launch' kills that long after the start, 'save' at the
# first temporary checkpoint directory seen after a new step, 'between' that
# long after a new finalized step.
KILLS = (('launch', 2.0), ('save', 0.0), ('between', 0.3), ('save', 0.0))


def _command(workdir, config):
  return [sys.executable, '-m', 'gcjax.main', f'--config={config}',
          f'--workdir={workdir}',
          f'--config.total_steps={STEPS}', '--config.ckpt_every=1',
          '--config.log_every=1', '--config.keep_ckpts=3']


def _listing(workdir):
  d = os.path.join(workdir, 'checkpoints')
  names = os.listdir(d) if os.path.isdir(d) else []
  return (sorted(int(n) for n in names if n.isdigit()),
          sorted(n for n in names if TMP_MARK in n))


@pytest.fixture(scope='module')
def env():
  return subprocess_env(devices=8)


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  """The smoke preset without evaluators: only the state is compared."""
  return no_evals_config(tmp_path_factory.mktemp('config'), 'pix2pix_gan')


@pytest.fixture(scope='module')
def reference(tmp_path_factory, env, config):
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  proc = subprocess.run(_command(workdir, config), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def _run_until_killed(cmd, env, log_path, kind, delay, rng, workdir):
  """Starts ``cmd`` and SIGKILLs it at the moment ``kind`` asks for.

  Returns (finalized steps before the start, what the kill hit).
  """
  before, _ = _listing(workdir)
  with open(log_path, 'w') as log:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
  start = time.monotonic()
  hit = 'timeout'
  try:
    while time.monotonic() - start < 600:
      if proc.poll() is not None:
        hit = 'finished'
        break
      steps, tmps = _listing(workdir)
      new = [s for s in steps if s not in before]
      if kind == 'launch' and time.monotonic() - start > delay:
        hit = 'launch'
        break
      if kind == 'save' and new and tmps:
        hit = 'save'
        break
      if kind == 'between' and new:
        time.sleep(rng.uniform(0, delay))
        hit = 'between'
        break
      if kind != 'save':
        time.sleep(0.01)
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait()
  return before, hit


def test_kill_anywhere_then_resume_matches(reference, env, config,
                                           tmp_path):
  rng = random.Random(0)
  workdir = str(tmp_path / 'killed')
  cmd = _command(workdir, config)
  hits, tmp_seen = [], []
  for i, (kind, delay) in enumerate(KILLS):
    before, hit = _run_until_killed(cmd, env, tmp_path / f'run{i}.log', kind,
                                    delay, rng, workdir)
    steps, tmps = _listing(workdir)
    hits.append((hit, before[-1] if before else 0,
                 steps[-1] if steps else 0))
    if hit == 'save':
      assert tmps, 'killed mid-save but no temporary directory is left'
      tmp_seen += tmps
    # A restart resumes from the newest finalized step, never a tmp dir.
    log = open(tmp_path / f'run{i}.log').read()
    resumed = re.findall(r'resumed from .* at step (\d+)', log)
    if before:
      if resumed:
        assert int(resumed[0]) == before[-1], log[-2000:]
    else:
      assert not resumed
  assert any(h[0] == 'save' for h in hits), hits
  assert any(h[0] == 'between' for h in hits), hits
  last, _ = _listing(workdir)
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'at step {last[-1]}' in proc.stderr
  print(f'\nkill points (what was hit, step before, step after): {hits}; '
        f'half-written checkpoints left by the kills: {tmp_seen}')
  step, got = final_params(workdir)
  ref_step, want = final_params(reference)
  assert step == ref_step == STEPS
  chex.assert_trees_all_equal(got, want)
  assert os.path.exists(os.path.join(workdir, 'results.json'))


def test_unfinished_checkpoints_are_not_listed(reference, tmp_path):
  """Orbax's atomic finalization: a step counts once its dir is renamed.

  (On a local file system the rename is the commit: orbax lists a step
  directory even without its commit_success.txt, which it only consults on
  object stores such as GCS.)
  """
  ckdir = tmp_path / 'checkpoints'
  shutil.copytree(os.path.join(reference, 'checkpoints'), ckdir)
  # A complete-looking save that was killed before its rename.
  shutil.copytree(ckdir / str(STEPS), ckdir / f'{STEPS + 1}{TMP_MARK}')
  ck = ckpt_lib.Checkpointer(str(ckdir))
  try:
    assert ck.latest_step() == STEPS
    assert STEPS + 1 not in ck.all_steps()
  finally:
    ck.close()

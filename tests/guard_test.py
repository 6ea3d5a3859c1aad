"""The non-finite guard (policies stop/skip) and the Langevin gradient clip.

A NaN is injected with ``config.debug.nan_at_step`` (the trainer multiplies
that step's float inputs by NaN) into the pix2pix_gan smoke run.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import common, pix2pix_gan
from gcjax import train
from gcjax.objectives import mi as mi_lib


def _config(policy: str, nan_at_step: int) -> ml_collections.ConfigDict:
  c = pix2pix_gan.get_config('smoke')   # 4 steps, log and checkpoint every 2
  c.guard.policy = policy
  c.debug = ml_collections.ConfigDict({'nan_at_step': nan_at_step})
  c.evals = ml_collections.ConfigDict(
      {'image': {'type': 'image', 'every_steps': 0}})
  c.lock()
  return c


def _restore_latest(workdir):
  import orbax.checkpoint as ocp
  ckdir = os.path.join(workdir, 'checkpoints')
  steps = sorted(int(d) for d in os.listdir(ckdir) if d.isdigit())
  state = ocp.StandardCheckpointer().restore(
      os.path.join(ckdir, str(steps[-1]), 'state'))
  with open(os.path.join(ckdir, str(steps[-1]), 'meta', 'metadata')) as f:
    meta = json.load(f)
  return steps, state, meta


def _all_finite(tree) -> bool:
  return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(tree)
             if np.issubdtype(np.asarray(x).dtype, np.floating))


def test_stop_names_loss_and_step_and_keeps_last_good(tmp_path):
  workdir = str(tmp_path)
  with pytest.raises(train.TrainingDiverged) as err:
    train.run(_config('stop', nan_at_step=2), workdir)
  msg = str(err.value)
  # The first non-finite metric of step 2 (0-based; its checkpoint would
  # have been step 3) and the checkpoint kept.
  assert "Non-finite value of '" in msg and 'at step 2;' in msg, msg
  named = msg.split("'")[1]
  assert '/' in named and not named.startswith('guard/'), msg
  assert f'{os.path.join(workdir, "checkpoints")} is kept (step 2)' in msg
  steps, state, _ = _restore_latest(workdir)
  assert steps == [2]
  assert _all_finite(state)
  assert not os.path.exists(os.path.join(workdir, 'results.json'))


def test_skip_completes_and_counts(tmp_path):
  workdir = str(tmp_path)
  res = train.run(_config('skip', nan_at_step=1), workdir)
  assert res['_run']['skipped_steps'] == 1
  assert res['_run']['steps'] == 4
  steps, state, meta = _restore_latest(workdir)
  assert steps[-1] == 4 and meta['skipped'] == 1
  assert int(state['step']) == 4      # the skipped update still counts
  assert _all_finite(state)
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f)['_run']['skipped_steps'] == 1


def _langevin_grad_norm(grad_clip: float) -> float:
  section = common.mi('vem')
  common.smoke_mi(section)
  section.grad_clip = grad_clip
  shape = (8, 8, 1)
  mi = mi_lib.make_mi_from_config(section, t_shape=shape, s_shape=shape,
                                  total_steps=1)
  state = mi.init(jax.random.key(0))
  t = jax.random.uniform(jax.random.key(1), (2, *shape), minval=-1.0)
  s = jnp.tanh(t + 0.3)
  _, _, m = jax.jit(mi.update)(state, t, s, jax.random.key(2))
  return float(m['ebm/langevin_grad_norm'])


def test_langevin_grad_clip_config():
  free = _langevin_grad_norm(0.0)      # 0.0 (the config default): off
  assert free > 0
  clip = free / 10
  clipped = _langevin_grad_norm(clip)
  np.testing.assert_allclose(clipped, clip, rtol=1e-4)

"""The non-finite guard (policies stop/skip) and the Langevin gradient clip.

A NaN is injected with ``config.debug.nan_at_step`` (the trainer multiplies
that step's float inputs by NaN) into the pix2pix_gan smoke run, and inside
one sub-loss (NaN or -inf) by the toy plug-in ``tests/plugins/toy_guard.py``.
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


def _config(policy: str, nan_at_step: int,
            ckpt_every: int = 2) -> ml_collections.ConfigDict:
  c = pix2pix_gan.get_config('smoke')   # 4 steps, log and checkpoint every 2
  c.guard.policy = policy
  c.ckpt_every = ckpt_every
  c.keep_ckpts = 10
  c.debug = ml_collections.ConfigDict({'nan_at_step': nan_at_step})
  c.evals = ml_collections.ConfigDict(
      {'image': {'type': 'image', 'every_steps': 0}})
  c.lock()
  return c


def _restore(workdir, step=None):
  """(steps on disk, state, meta) of checkpoint ``step`` (default: latest)."""
  import orbax.checkpoint as ocp
  ckdir = os.path.join(workdir, 'checkpoints')
  steps = sorted(int(d) for d in os.listdir(ckdir) if d.isdigit())
  step = steps[-1] if step is None else step
  state = ocp.StandardCheckpointer().restore(
      os.path.join(ckdir, str(step), 'state'))
  with open(os.path.join(ckdir, str(step), 'meta', 'metadata')) as f:
    meta = json.load(f)
  return steps, state, meta


_restore_latest = _restore


def _assert_equal_but_step(before, after):
  """Every leaf but ``step`` bitwise equal (params, optimizer, stats)."""
  before, after = dict(before), dict(after)
  assert int(after.pop('step')) == int(before.pop('step')) + 1
  flat_b = jax.tree_util.tree_leaves_with_path(before)
  flat_a = jax.tree_util.tree_leaves_with_path(after)
  assert [p for p, _ in flat_b] == [p for p, _ in flat_a]
  assert len(flat_b) > 3
  for (path, b), (_, a) in zip(flat_b, flat_a):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b),
                                  err_msg=jax.tree_util.keystr(path))


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
  res = train.run(_config('skip', nan_at_step=1, ckpt_every=1), workdir)
  assert res['_run']['skipped_steps'] == 1
  assert res['_run']['steps'] == 4
  steps, state, meta = _restore_latest(workdir)
  assert steps[-1] == 4 and meta['skipped'] == 1
  assert int(state['step']) == 4      # the skipped update still counts
  assert _all_finite(state)
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f)['_run']['skipped_steps'] == 1
  # The bad step 1 (state 1 -> 2) changed nothing but the step counter:
  # generator, discriminator, both optimizers and batch stats are bitwise
  # those before it; the good step 2 (2 -> 3) did change them.
  _, s1, _ = _restore(workdir, 1)
  _, s2, _ = _restore(workdir, 2)
  _, s3, _ = _restore(workdir, 3)
  _assert_equal_but_step(s1, s2)
  assert not np.array_equal(s3['gen']['params']['down0_conv']['kernel'],
                            s2['gen']['params']['down0_conv']['kernel'])


def _toy_config(policy: str, bad: str) -> ml_collections.ConfigDict:
  c = common.base()
  c.method = 'plugins.toy_guard'
  c.data = common.no_data(batch_size=8, eval_rows=8)
  c.toy = ml_collections.ConfigDict(
      {'bad_step': 2, 'bad': bad, 'lr': 0.1})
  c.total_steps = 4
  c.log_every = 4                    # the bad step is flushed with others
  c.ckpt_every = 1
  c.keep_ckpts = 10
  c.n_samples = 2
  c.eval_batch_size = 8
  c.guard.policy = policy
  c.lock()
  return c


@pytest.mark.parametrize('bad', ['nan', 'inf'])
def test_stop_names_the_sub_loss_that_went_non_finite(tmp_path, bad):
  """A NaN / -inf arising inside one term (not in the inputs) stops the run
  naming that term, not the total or the gradient norm it poisons."""
  with pytest.raises(train.TrainingDiverged) as err:
    train.run(_toy_config('stop', bad), str(tmp_path))
  msg = str(err.value)
  assert msg.startswith("Non-finite value of 'toy/bad' at step 2;"), (
      bad, msg)


@pytest.mark.parametrize('bad', ['nan', 'inf'])
def test_skip_keeps_state_bitwise_on_a_non_finite_sub_loss(tmp_path, bad):
  workdir = str(tmp_path)
  res = train.run(_toy_config('skip', bad), workdir)
  assert res['_run']['skipped_steps'] == 1
  _, s2, _ = _restore(workdir, 2)
  _, s3, _ = _restore(workdir, 3)
  _, s4, _ = _restore(workdir, 4)
  _assert_equal_but_step(s2, s3)      # the bad step 2 (state 2 -> 3)
  assert not np.array_equal(s4['w'], s3['w'])
  assert _all_finite(s4)


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

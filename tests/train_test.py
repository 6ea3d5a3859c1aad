"""Trainer end to end on the gan smoke config: outputs, resume, sharding."""

import importlib
import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
import smoke_runs
from ml_collections import config_flags  # noqa: F401

from gcjax import checkpoint as ckpt_lib
from gcjax import sharding, train
from gcjax.data import pipeline
from gcjax.methods.gan import pix2pix as gan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name='pix2pix_gan', preset='smoke'):
  mod = importlib.import_module(f'configs.{name}')
  c = mod.get_config(preset)
  c.lock()
  return c


def _final_params(workdir):
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'))
  step = ck.latest_step()
  mgr_dir = os.path.join(ck.directory, str(step), 'state')
  ck.close()
  import orbax.checkpoint as ocp
  return step, ocp.StandardCheckpointer().restore(mgr_dir)


SPEC = 'pix2pix_gan:smoke'


@pytest.fixture
def gan_run(smoke_run):
  """The pix2pix_gan smoke run, shared with smoke_equality_test."""
  return smoke_run(SPEC)


@smoke_runs.group(SPEC)
def test_smoke_run_writes_outputs(gan_run):
  workdir, results = gan_run
  files = os.listdir(workdir)
  assert 'results.json' in files and 'results.md' in files
  assert any(f.startswith('events.out.tfevents') for f in files)
  assert os.listdir(os.path.join(workdir, 'samples'))
  assert os.path.exists(os.path.join(workdir, 'export', 'generator.npz'))
  with open(os.path.join(workdir, 'results.json')) as f:
    res = json.load(f)
  g = res['generator']
  assert g['params'] > 0 and g['macs_true'] > 0
  assert g['macs_literature'] > g['macs_true']   # transposed convs
  assert np.isfinite(g['psnr']) and 0 < g['ssim'] <= 1
  assert res['_run']['steps'] == 4
  step, _ = _final_params(workdir)
  assert step == 4


@smoke_runs.group(SPEC)
def test_resume_equals_uninterrupted(gan_run, tmp_path):
  workdir, _ = gan_run
  _, full = _final_params(workdir)
  c = _config()
  with c.unlocked():
    c.run_steps = 1            # "preempted" after 1 step, then twice more
  d = str(tmp_path)
  for _ in range(2):
    out = train.run(c, d)
    assert 'stopped_at' in out['_run']
  with c.unlocked():
    c.run_steps = 0
  res = train.run(c, d)
  assert res['_run']['resumed_from'] == 2
  _, resumed = _final_params(d)
  chex.assert_trees_all_equal(full, resumed)


@smoke_runs.group(SPEC)
def test_checkpoint_from_other_config_is_refused(gan_run, tmp_path):
  workdir, _ = gan_run
  c = _config()
  with c.unlocked():
    c.generator.ngf = 8
  with pytest.raises(ValueError, match=(
      r'Checkpoint .*checkpoints/4: gen\.params\.down0_conv\.kernel has '
      r'shape \(4, 4, 1, 4\), the current config expects \(4, 4, 1, 8\)')):
    train.run(c, workdir)


def _one_step(devices, partitionable=False):
  with jax.threefry_partitionable(partitionable):
    return _one_step_in(devices)


def _one_step_in(devices):
  c = _config()
  mesh = sharding.create_mesh(devices)
  arrays = {'src': np.random.RandomState(0).randint(0, 255, (8, 16, 16, 1),
                                                    dtype=np.uint8),
            'tgt': np.random.RandomState(1).randint(0, 255, (8, 16, 16, 1),
                                                    dtype=np.uint8)}
  b = pipeline.Batcher(arrays, 8, seed=0, device_count=len(devices))
  batch = sharding.global_from_host(b.batch(0), mesh)
  method = gan.make(c, batch)
  rep = sharding.replicated(mesh)
  state = jax.jit(method.init, out_shardings=rep)(jax.random.key(0))
  def step_fn(*args):
    return method.train_step(*args)
  step = jax.jit(chex.assert_max_traces(step_fn, n=1), out_shardings=rep)
  for _ in range(2):
    state, m = step(state, batch, jax.random.key(1), None)
  return jax.device_get(state), jax.device_get(m)


def test_sharded_step_equals_single_device():
  assert jax.device_count() == 8
  chex.clear_trace_counter()
  s8, m8 = _one_step(jax.devices())
  chex.clear_trace_counter()
  s1, m1 = _one_step(jax.devices()[:1])
  chex.assert_trees_all_close(m8, m1, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(s8.gen.params, s1.gen.params, rtol=1e-4,
                              atol=1e-5)


def test_sharded_step_equals_single_device_partitionable_threefry():
  """The pod setting (``threefry_partitionable=True``): dropout masks of the
  batch-sharded activations are drawn per shard, with the same bits as on
  one device."""
  chex.clear_trace_counter()
  s8, m8 = _one_step(jax.devices(), partitionable=True)
  chex.clear_trace_counter()
  s1, m1 = _one_step(jax.devices()[:1], partitionable=True)
  chex.assert_trees_all_close(m8, m1, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(s8.gen.params, s1.gen.params, rtol=1e-4,
                              atol=1e-5)
  # Another random stream than the classic threefry's (the flag took).
  chex.clear_trace_counter()
  c8, _ = _one_step(jax.devices())
  assert not np.array_equal(c8.gen.params['down0_conv']['kernel'],
                            s8.gen.params['down0_conv']['kernel'])


# Two fresh interpreters (own hash seeds, pids, jit caches) run the same
# sharded steps; they print a digest of the parameters and metrics.
_DIGEST = """
import hashlib, sys
sys.path.insert(0, 'tests')
import conftest  # noqa: F401  (8 fake devices, classic threefry)
import jax, numpy as np
import train_test
state, m = train_test._one_step(jax.devices())
h = hashlib.sha256()
for leaf in jax.tree.leaves((state.gen.params, state.disc.params, m)):
  h.update(np.asarray(leaf).tobytes())
print('digest', h.hexdigest())
"""


def test_same_seed_same_result_in_two_processes():
  procs = [subprocess.Popen([sys.executable, '-c', _DIGEST], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for _ in range(2)]
  digests = []
  for p in procs:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    digests.append([ln for ln in out.splitlines()
                    if ln.startswith('digest ')][-1])
  assert digests[0] == digests[1]


def test_config_typo_names_the_key(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'gcjax.main',
       '--config=configs/pix2pix_gan.py:smoke', f'--workdir={tmp_path}',
       '--config.optim.g.lrr=0.1'],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert 'lrr' in proc.stderr
  assert not os.path.exists(os.path.join(tmp_path, 'checkpoints'))


@smoke_runs.group(SPEC)
def test_exported_generator_and_disc_reload_through_run_specs(gan_run):
  """``run:<workdir>:<net>`` rebuilds the run's G and D from the export card
  alone; they reproduce the trained networks' outputs."""
  import jax.numpy as jnp

  from gcjax import teachers
  from gcjax.recipes import nets
  workdir, _ = gan_run
  _, state = _final_params(workdir)
  c = _config()
  x = jax.random.uniform(jax.random.key(3), (4, 16, 16, 1), minval=-1)
  trained = {
      'generator': (nets.unet_generator(c.generator, 1), state['gen'], x),
      'disc': (nets.patch_discriminator(c.disc), state['disc'],
               jnp.concatenate([x, -x], -1))}
  for name, (module, net, inp) in trained.items():
    got_module, got_vars = teachers.load(f'run:{workdir}:{name}')
    assert got_module == module
    want = module.apply({'params': net['params'],
                         'batch_stats': net['batch_stats']}, inp)[0]
    got = got_module.apply(got_vars, inp, train=False)[0]
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
  # The default network of a run with several is its generator.
  assert teachers.load(f'run:{workdir}')[0] == trained['generator'][0]


@pytest.mark.parametrize('spec,match', [
    ('run:/nonexistent', 'run:/nonexistent: no run folder'),
    ('pretrained:nope', 'unknown pretrained network'),
    ('weights.npz', 'expected run:<workdir>'),
])
def test_bad_network_specs_name_the_spec(spec, match):
  from gcjax import errors, teachers
  with pytest.raises(errors.UserError, match=match):
    teachers.load(spec)


@smoke_runs.group(SPEC)
def test_missing_net_and_mismatched_warm_start_are_refused(gan_run):
  import jax.numpy as jnp

  from gcjax import errors, teachers
  from gcjax.models import unet
  workdir, _ = gan_run
  with pytest.raises(errors.UserError, match="no network 'student'"):
    teachers.load(f'run:{workdir}:student')
  wider = unet.UNetGenerator(ngf=8, out_ch=1, norm='batch', dropout=0.5)
  with pytest.raises(errors.UserError, match='generator.init=.*config builds'):
    teachers.load_like(f'run:{workdir}', wider, jnp.zeros((1, 16, 16, 1)),
                       'generator.init')
  c = _config()
  with c.unlocked():
    c.generator.init = f'run:{workdir}'
  same = gan.make(c, {'src': jnp.zeros((8, 16, 16, 1)),
                      'tgt': jnp.zeros((8, 16, 16, 1))})
  s0 = same.init(jax.random.key(0))
  _, state = _final_params(workdir)
  chex.assert_trees_all_close(s0.gen.params, state['gen']['params'])

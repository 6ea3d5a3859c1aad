"""OMGD (+ VEM) method: sharded == single-device step, no retracing, e2e."""

import os

import chex
import jax
import numpy as np

from configs import pix2pix_omgd
from gcjax import sharding, train
from gcjax.data import pipeline
from gcjax.methods import omgd


def _config(kind='vem'):
  c = pix2pix_omgd.build(kind, 'smoke')
  # VGG losses off here: they are exercised by the end-to-end test.
  c.loss.style = 0.0
  c.loss.perceptual = 0.0
  c.lock()
  return c


def _steps(devices, kind='vem', n=2):
  c = _config(kind)
  mesh = sharding.create_mesh(devices)
  rng = np.random.RandomState(0)
  arrays = {k: rng.randint(0, 255, (8, 16, 16, 1), dtype=np.uint8)
            for k in ('src', 'tgt')}
  b = pipeline.Batcher(arrays, 8, seed=0, device_count=len(devices))
  batch = sharding.global_from_host(b.batch(0), mesh)
  method = omgd.make(c, batch)
  rep = sharding.replicated(mesh)
  state = jax.jit(method.init, out_shardings=rep)(jax.random.key(0))

  def step_fn(*args):
    return method.train_step(*args)
  step = jax.jit(chex.assert_max_traces(step_fn, n=1), out_shardings=rep,
                 donate_argnums=(0,))
  ms = []
  for _ in range(n):
    state, m = step(state, batch, jax.random.key(1), None)
    ms.append(m)
  return jax.device_get(state), jax.device_get(ms)


def test_vem_step_sharded_equals_single_device_and_traces_once():
  chex.clear_trace_counter()
  s8, m8 = _steps(jax.devices())
  chex.clear_trace_counter()
  s1, m1 = _steps(jax.devices()[:1])
  for k in ('ebm/e_pos', 'ebm/e_neg', 'ebm/step_norm', 's/loss', 't0/loss',
            's/mi/student_term', 'ebm/move_noise_ratio', 's/mi_grad_ratio'):
    assert k in m8[-1], k
  chex.assert_tree_all_finite(m8)
  chex.assert_trees_all_close(m8, m1, rtol=2e-4, atol=2e-5)
  chex.assert_trees_all_close(s8.student.params, s1.student.params,
                              rtol=2e-4, atol=2e-5)
  chex.assert_trees_all_close(s8.mi, s1.mi, rtol=2e-4, atol=2e-5)


def test_vem_smoke_end_to_end(tmp_path):
  c = pix2pix_omgd.build('vem', 'smoke')
  c.lock()
  res = train.run(c, str(tmp_path))
  assert set(res) >= {'teacher', 'student'}
  assert res['student']['params'] < res['teacher']['params']
  assert 'agree_psnr' in res['student']
  assert os.path.exists(tmp_path / 'results.md')
  assert os.path.exists(tmp_path / 'export' / 'student.npz')
  # EBM diagnostics: logged train-step metrics and the held-out probes.
  last = res['_run']['last_losses']
  for k in ('ebm/e_pos', 'ebm/e_neg', 'ebm/gap', 'ebm/move_noise_ratio',
            's/mi_grad_ratio'):
    assert np.isfinite(last[k]), k
  assert last['s/mi_grad_ratio'] > 0
  for k in ('ebm_shuffle_gap', 'ebm_shuffle_acc', 'ebm_neg_gap',
            'ebm_e_pos'):
    assert np.isfinite(res['student'][k]), k
  assert not os.path.exists(tmp_path / 'export' / 'ebm.npz')

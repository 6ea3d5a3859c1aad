"""CycleGAN teacher training and distillation: costs, losses, pool, runs."""

import importlib
import json
import os
import tempfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from gcjax import train
from gcjax.data import pipeline
from gcjax.methods import omgd
from gcjax.methods.gan import cyclegan as gan_cyclegan
from gcjax.metrics import cost
from gcjax.models import resnet
from gcjax.recipes import cycle as cg


def _config(name, preset):
  c = importlib.import_module(f'configs.{name}').get_config(preset)
  c.lock()
  return c


def _batch(arrays, n):
  return {k: jnp.asarray(pipeline.to_float(v[:n])) for k, v in arrays.items()}


class CostTest(absltest.TestCase):
  """Parameters and MACs against the papers (traced only, never run)."""

  def _cost(self, module):
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    v = jax.eval_shape(module.init, jax.random.key(0), x)
    macs = cost.count_macs(lambda v, x: module.apply(v, x)[0], v, x)
    return cost.count_params(v['params']), macs

  def test_teacher_resnet9_ngf64(self):
    params, macs = self._cost(resnet.ResnetGenerator(ngf=64))
    self.assertEqual(params, 11_378_179)          # paper: 11.3M
    self.assertAlmostEqual(macs['literature'] / 1e9, 56.8, delta=0.1)
    self.assertLess(macs['true'], macs['literature'])

  def test_student_mobile_ngf16(self):
    params, macs = self._cost(resnet.MobileResnetGenerator(ngf=16))
    self.assertEqual(params, 137_347)             # paper: 0.14M
    self.assertAlmostEqual(macs['literature'] / 1e9, 1.41, delta=0.01)
    self.assertLess(macs['true'], macs['literature'])


class LossTest(absltest.TestCase):

  def test_cycle_and_identity_by_hand(self):
    a = jnp.array([[[[0.5]], [[-0.5]]]])          # [1, 2, 1, 1]
    b = jnp.array([[[[1.0]], [[0.0]]]])
    rec_a = jnp.array([[[[0.0]], [[-0.5]]]])      # |diff| mean 0.25
    rec_b = jnp.array([[[[1.0]], [[1.0]]]])       # 0.5
    idt_a = jnp.array([[[[0.0]], [[0.0]]]])       # vs b: 0.5
    idt_b = jnp.array([[[[0.5]], [[0.5]]]])       # vs a: 0.5
    logits_a = jnp.full((1, 2, 2, 1), 0.5)        # lsgan (0.5-1)^2 = 0.25
    logits_b = jnp.ones((1, 2, 2, 1))             # 0
    w = cg.CycleWeights('lsgan', lambda_a=10.0, lambda_b=4.0,
                        lambda_identity=0.5)
    total, m = cg.generator_losses(rec_a, rec_b, idt_a, idt_b, logits_a,
                                   logits_b, a, b, w)
    want = {'adv_a': 0.25, 'adv_b': 0.0, 'cycle_a': 10 * 0.25,
            'cycle_b': 4 * 0.5, 'idt_a': 4 * 0.5 * 0.5,
            'idt_b': 10 * 0.5 * 0.5}
    for k, v in want.items():
      self.assertAlmostEqual(float(m[k]), v, places=6, msg=k)
    self.assertAlmostEqual(float(total), sum(want.values()), places=5)
    _, m0 = cg.generator_losses(rec_a, rec_b, None, None, logits_a,
                                logits_b, a, b, w._replace(lambda_identity=0))
    self.assertNotIn('idt_a', m0)


class PoolTest(absltest.TestCase):

  def test_fills_then_swaps_or_passes(self):
    query = jax.jit(cg.pool_query)
    pool = cg.pool_init(3, (1, 1, 1))
    first = jnp.arange(1.0, 4.0).reshape(3, 1, 1, 1)
    pool, out = query(pool, first, jax.random.key(0))
    chex.assert_trees_all_equal(out, first)        # filling: pass through
    chex.assert_trees_all_equal(pool.images, first)
    self.assertEqual(int(pool.count), 3)
    stored = set(np.asarray(first).ravel().tolist())
    returned_old = 0
    for i in range(20):
      new = jnp.full((2, 1, 1, 1), 10.0 + i)
      pool, out = query(pool, new, jax.random.key(i + 1))
      self.assertEqual(int(pool.count), 3)
      for v in np.asarray(out).ravel().tolist():
        # Either the new image or one that was in the pool before.
        self.assertTrue(v == 10.0 + i or v in stored, msg=(i, v))
        returned_old += v != 10.0 + i
      for v in np.asarray(pool.images).ravel().tolist():
        self.assertTrue(v == 10.0 + i or v in stored)
      stored = set(np.asarray(pool.images).ravel().tolist())
    self.assertBetween(returned_old, 5, 35)        # about half of 40

  def test_deterministic_and_size_zero(self):
    pool = cg.pool_init(2, (2, 2, 1))
    x = jnp.arange(24.0).reshape(6, 2, 2, 1)
    p1, o1 = cg.pool_query(pool, x, jax.random.key(3))
    p2, o2 = cg.pool_query(pool, x, jax.random.key(3))
    chex.assert_trees_all_equal((p1, o1), (p2, o2))
    empty = cg.pool_init(0, (2, 2, 1))
    _, o = cg.pool_query(empty, x, jax.random.key(3))
    chex.assert_trees_all_equal(o, x)


class MethodTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.enter_context(jax.threefry_partitionable(False))

  def test_gan_cyclegan_step_runs(self):
    from gcjax import data as data_lib
    c = _config('cyclegan_gan', 'smoke')
    arrays = data_lib.load(c.data.name, 'train', **c.data.args.to_dict())
    batch = _batch(arrays, 8)
    m = gan_cyclegan.make(c, batch)
    state = jax.jit(m.init)(jax.random.key(0))
    self.assertEqual(state.cycle.pool_b.images.shape, (4, 16, 16, 1))
    new, metrics = jax.jit(m.train_step)(state, batch, jax.random.key(1),
                                         None)
    chex.assert_tree_all_finite(metrics)
    for k in ('g/cycle_a', 'g/idt_b', 'd_a/loss', 'd_b/loss'):
      self.assertIn(k, metrics)
    self.assertEqual(int(new.cycle.pool_b.count), 4)   # pool of 4 filled
    for old, upd in ((state.cycle.g_a, new.cycle.g_a),
                     (state.cycle.d_b, new.cycle.d_b)):
      moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), old.params,
                           upd.params)
      self.assertTrue(all(jax.tree.leaves(moved)))

  def test_online_distillation_step_shapes(self):
    # Traced only (the CycleGAN part runs in test_gan_cyclegan_step_runs,
    # the student update in the end-to-end run).
    from gcjax import data as data_lib
    c = _config('cyclegan_vem', 'smoke_online')
    arrays = data_lib.load(c.data.name, 'train', **c.data.args.to_dict())
    batch = _batch(arrays, 8)
    m = omgd.make(c, batch)
    state = jax.eval_shape(m.init, jax.random.key(0))
    new, metrics = jax.eval_shape(m.train_step, state, batch,
                                  jax.random.key(1), m.frozen)
    chex.assert_trees_all_equal_shapes_and_dtypes(new, state)
    for k in ('t/g/cycle_a', 't/d_a/loss', 's/ssim', 's/style',
              's/feature', 'ebm/loss'):
      self.assertIn(k, metrics)
    self.assertEqual(state.teacher.pool_b.images.shape, (50, 16, 16, 1))


class SmokeRunTest(absltest.TestCase):

  def test_cyclegan_vem_smoke_end_to_end(self):
    workdir = self.enter_context(tempfile.TemporaryDirectory())
    res = train.run(_config('cyclegan_vem', 'smoke'), workdir)
    self.assertEqual(res['_run']['steps'], 2)
    s = res['student']
    self.assertTrue(np.isfinite(s['agree_psnr']))
    self.assertBetween(s['agree_ssim'], -1.0, 1.0)
    with open(os.path.join(workdir, 'results.json')) as f:
      self.assertIn('student', json.load(f))
    self.assertTrue(os.path.exists(os.path.join(workdir, 'export',
                                                'student.npz')))
    self.assertTrue(os.listdir(os.path.join(workdir, 'samples')))


if __name__ == '__main__':
  absltest.main()

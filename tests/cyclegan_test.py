"""CycleGAN teacher training and distillation: costs, losses, pool, runs."""

import importlib
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import smoke_runs
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

  def test_online_distillation_steps_and_d_losses_by_hand(self):
    """Real steps of OMGD's online CycleGAN distiller (teacher update, VGG
    terms, VEM); each discriminator's loss is half the LSGAN loss on the real
    batch and on what the image pool returned, recomputed here."""
    from gcjax import data as data_lib
    from gcjax.recipes import nets as nets_lib
    c = importlib.import_module('configs.cyclegan_vem').get_config(
        'smoke_online')
    c.cyclegan.pool_size = 8          # full after one batch of 8: swaps
    c.lock()
    arrays = data_lib.load(c.data.name, 'train', **c.data.args.to_dict())
    # Other images every step: pooled fakes of earlier steps differ from
    # the newest ones.
    batches = [_batch({k: v[8 * i:] for k, v in arrays.items()}, 8)
               for i in range(3)]
    a_key, b_key = c.cyclegan.domains
    m = omgd.make(c, batches[0])
    step = jax.jit(m.train_step)
    states, metrics = [jax.jit(m.init)(jax.random.key(0))], []
    for batch in batches:
      new, met = step(states[-1], batch, jax.random.key(1), m.frozen)
      states.append(new)
      metrics.append(jax.device_get(met))
    chex.assert_tree_all_finite(metrics)
    for k in ('t/g/cycle_a', 't/g/idt_a', 's/ssim', 's/feature',
              'ebm/loss', 's/mi/student_term'):
      self.assertIn(k, metrics[-1])
    for k in ('s/style', 's/perceptual'):   # VGG terms on and non-zero
      self.assertGreater(float(metrics[-1][k]), 0.0)
    for net in ('g_a', 'g_b', 'd_a', 'd_b'):   # the teacher trains
      moved = jax.tree.map(lambda x, y: bool(jnp.any(x != y)),
                           getattr(states[1].teacher, net).params,
                           getattr(states[2].teacher, net).params)
      self.assertTrue(all(jax.tree.leaves(moved)), net)
    moved = jax.tree.map(lambda x, y: bool(jnp.any(x != y)),
                         states[1].student.params, states[2].student.params)
    self.assertTrue(all(jax.tree.leaves(moved)))

    disc = nets_lib.patch_discriminator(c.disc)
    gens = {'g_a': nets_lib.resnet_generator(c.teacher, batch[b_key].shape[-1]),
            'g_b': nets_lib.resnet_generator(c.teacher, batch[a_key].shape[-1])}
    as_list = lambda x: list(x) if isinstance(x, (list, tuple)) else [x]

    def d_out(net, x):
      logits = disc.apply({'params': net.params}, x, train=True)[0]
      return [np.asarray(o, np.float64) for o in as_list(logits)]

    for i in (0, 2):   # step 0: pools filling; step 2: pools full, swapping
      before, after = states[i].teacher, states[i + 1].teacher
      batch = batches[i]
      for d, pool, real, src, g in (('d_a', 'pool_b', b_key, a_key, 'g_a'),
                                    ('d_b', 'pool_a', a_key, b_key, 'g_b')):
        old = np.asarray(getattr(before, pool).images)
        new = np.asarray(getattr(after, pool).images)
        n_old = int(getattr(before, pool).count)
        fakes = np.asarray(gens[g].apply(
            {'params': getattr(before, g).params}, batch[src],
            train=False)[0])
        # While filling, the pool stores a copy of each fake and returns
        # it; once full it conserves images: what it returned is what came
        # in (its contents and the other fakes) minus what it now holds.
        fill = max(0, min(len(old) - n_old, len(fakes)))
        came_in = [*old[:n_old], *fakes]
        returned = list(fakes[:fill])
        kept = [x for x in new]
        for x in came_in:
          hit = next((j for j, y in enumerate(kept)
                      if np.allclose(x, y, atol=1e-5)), None)
          if hit is None:
            returned.append(x)
          else:
            kept.pop(hit)
        self.assertEqual(len(returned), 8)
        # Step 2: the pool returned some old images instead of new fakes.
        self.assertEqual(i == 2, not np.allclose(np.stack(returned), fakes,
                                                 atol=1e-3))
        net = getattr(before, d)
        r, f = d_out(net, batch[real]), d_out(net, np.stack(returned))
        want = 0.5 * sum(np.mean((ro - 1.0) ** 2) + np.mean(fo ** 2)
                         for ro, fo in zip(r, f))
        np.testing.assert_allclose(metrics[i][f't/{d}/loss'], want,
                                   rtol=1e-4, err_msg=f'{d} step {i}')


SMOKE = 'cyclegan_vem:smoke'


@smoke_runs.group(SMOKE)
def test_cyclegan_vem_smoke_end_to_end(smoke_run):
  """The smoke run (shared with smoke_equality_test) wrote its outputs, and
  its agreement figures are the mean per-image L1 / SSIM between the
  exported student and the pretrained teacher over the test split."""
  from gcjax import teachers
  from gcjax.metrics import image
  workdir, res = smoke_run(SMOKE)
  assert res['_run']['steps'] == 2
  with open(os.path.join(workdir, 'results.json')) as f:
    assert 'student' in json.load(f)
  assert os.listdir(os.path.join(workdir, 'samples'))
  c = smoke_runs.config(SMOKE)
  test = train._load_split(c, c.data.test_split, c.data.test_limit)
  x = pipeline.to_float(test[c.cyclegan.domains[0]])
  assert len(x) >= 2
  student, s_vars = teachers.load(f'run:{workdir}:student')
  teacher, t_vars = teachers.load(c.teacher.init)
  s_img = np.asarray(student.apply(s_vars, x, train=False)[0])
  t_img = np.asarray(teacher.apply(t_vars, x, train=False)[0])
  got = res['student']
  np.testing.assert_allclose(got['agree_ssim'],
                             np.mean(image.ssim(s_img, t_img)), rtol=1e-4)
  np.testing.assert_allclose(got['agree_l1'], np.mean(np.abs(s_img - t_img)),
                             rtol=1e-4)


if __name__ == '__main__':
  absltest.main()

"""KDIT pieces: style-mixed triplets, each loss by hand, the bounded
semantic diversity loss, hint layers, and each student's assembled stage-1
loss against the hand sum of its reported terms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import kdit_i2i, kdit_x2i
from gcjax.methods.kdit import common
from gcjax.methods.kdit import x2i as x2i_lib
from gcjax.models import kdit as models
from gcjax.models import stylegan
from gcjax.objectives import kdit as losses
from gcjax.recipes import triplets


@pytest.fixture(scope='module')
def teacher():
  gen = stylegan.StyleGenerator(z_dim=8, w_dim=8, map_layers=2,
                                resolution=16, out_ch=1, ch_base=64,
                                ch_max=4)
  disc = stylegan.StyleDiscriminator(resolution=16, z_dim=0, ch_base=64,
                                     ch_max=4)
  gv = gen.init(jax.random.key(0), jnp.zeros((1, 8)))
  dv = disc.init(jax.random.key(1), jnp.zeros((1, 16, 16, 1)))
  return gen, gv, disc, dv


def test_triplets_take_w1_below_the_cutoff_and_w2_from_it(teacher):
  gen, gv, disc, dv = teacher
  z1, z2 = triplets.latents(jax.random.key(2), 3, 8)
  tr = triplets.make(gen, gv, disc, dv, z1, z2, cutoff=2)
  w1 = gen.apply(gv, z1, method='map')
  w2 = gen.apply(gv, z2, method='map')
  assert gen.num_ws == 6
  # By hand: layers 0, 1 read w1; layers 2..5 read w2.
  ws = jnp.stack([w1, w1, w2, w2, w2, w2], axis=1)
  y, gy = gen.apply(gv, ws, method='synthesize')
  np.testing.assert_allclose(tr.y, y, atol=1e-5)
  np.testing.assert_allclose(tr.x1, gen.apply(gv, z1)[0], atol=1e-5)
  np.testing.assert_allclose(tr.x2, gen.apply(gv, z2)[0], atol=1e-5)
  for r in (4, 8, 16):
    np.testing.assert_allclose(tr.g_y[f'res{r}'], gy[f'res{r}'], atol=1e-5)
  # y shares x1's coarsest map (only w1 reaches it), not its image.
  np.testing.assert_allclose(tr.g_y['res4'], tr.g_x1['res4'], atol=1e-6)
  assert float(jnp.abs(tr.y - tr.x1).max()) > 1e-3
  assert float(jnp.abs(tr.y - tr.x2).max()) > 1e-3
  # The teacher D's features are of each image.
  for img, feats in ((tr.x1, tr.d_x1), (tr.x2, tr.d_x2), (tr.y, tr.d_y)):
    want = disc.apply(dv, img)[1]
    np.testing.assert_allclose(feats['block16'], want['block16'], atol=1e-5)


def test_feature_and_output_l1_by_hand():
  t = {'a': jnp.array([[1.0, 2.0], [3.0, 4.0]]), 'b': jnp.array([[0.0]])}
  s = {'x': jnp.array([[1.5, 2.0], [2.0, 4.0]]), 'y': jnp.array([[2.0]])}
  # a vs x: |.| = 0.5, 0, 1, 0 -> mean 0.375; b vs y: 2.
  got = losses.feature_l1(t, s, [('a', 'x', 0.1), ('b', 'y', 0.5)])
  np.testing.assert_allclose(got, 0.1 * 0.375 + 0.5 * 2.0, rtol=1e-6)
  np.testing.assert_allclose(
      losses.output_l1(jnp.zeros((2, 2)), jnp.array([[1.0, -1.0],
                                                     [3.0, 0.0]]), 0.1),
      0.1 * 1.25, rtol=1e-6)
  assert losses.width_weight(64) == 0.1 and losses.width_weight(128) == 0.01
  with pytest.raises(ValueError, match='L1 between shapes'):
    losses.l1(jnp.zeros((2,)), jnp.zeros((3,)))


def test_semantic_diversity_rewards_difference_and_stays_bounded():
  a = jnp.zeros((2, 4))
  near, far = jnp.full((2, 4), 0.1), jnp.full((2, 4), 0.4)
  # By hand: per-example mean |a - b| clipped at the margin 0.5.
  np.testing.assert_allclose(losses.semantic_diversity(a, near, 0.5), -0.1,
                             rtol=1e-6)
  assert losses.semantic_diversity(a, far, 0.5) < (
      losses.semantic_diversity(a, near, 0.5))
  mixed = jnp.stack([jnp.full((4,), 3.0), jnp.full((4,), 0.2)])
  np.testing.assert_allclose(losses.semantic_diversity(a, mixed, 0.5),
                             -(0.5 + 0.2) / 2, rtol=1e-6)
  huge = jnp.full((2, 4), 1e6)
  assert float(losses.semantic_diversity(a, huge, 0.5)) == -0.5
  # Past the margin it stops pushing: no gradient.
  g = jax.grad(lambda b: losses.semantic_diversity(a, b, 0.5))(far * 5)
  assert float(jnp.abs(g).max()) == 0.0
  g = jax.grad(lambda b: losses.semantic_diversity(a, b, 0.5))(near)
  assert float(g.sum()) < 0.0          # descending moves b away from a.


def test_hint_layers_map_widths_that_differ_and_pass_equal_ones():
  hints = models.Hints((('f', 8), ('g', 4)))
  feats = {'f': jnp.ones((2, 4, 4, 3)), 'g': jnp.ones((2, 2, 2, 4)),
           'unused': jnp.ones((1,))}
  v = hints.init(jax.random.key(0), feats)
  out = hints.apply(v, feats)
  assert out['f'].shape == (2, 4, 4, 8)
  assert out['g'].shape == (2, 2, 2, 4)
  np.testing.assert_array_equal(out['g'], feats['g'])
  assert set(v['params']) == {'hint_f'}
  assert v['params']['hint_f']['kernel'].shape == (1, 1, 3, 8)
  assert set(out) == {'f', 'g'}


def test_pairing_by_side_and_hint_widths():
  t = {'block16': jnp.zeros((1, 8, 8, 4)), 'block8': jnp.zeros((1, 4, 4, 6)),
       'penultimate': jnp.zeros((1, 6))}
  s = {'content8': jnp.zeros((1, 8, 8, 2)), 'content4': jnp.zeros((1, 4, 4,
                                                                   6)),
       'content2': jnp.zeros((1, 2, 2, 3)), 'gen8': jnp.zeros((1, 8, 8, 2))}
  pairs = common.pair_by_side(t, s, 'block', 'content', 0.1)
  assert pairs == [('block8', 'content4', 0.1), ('block16', 'content8', 0.1)]
  assert common.hint_widths(t, pairs) == (('content4', 6), ('content8', 4))
  assert common.disc_spec('run:a/b', '') == 'run:a/b:disc'
  assert common.disc_spec('run:a/b:generator', '') == 'run:a/b:disc'


def _step_metrics(config_module, **kdit):
  c = config_module.get_config('smoke')
  c.kdit.update(kdit)
  method = __import__(
      f'gcjax.methods.kdit.{c.kdit.student}', fromlist=['make']).make(c, None)
  state = method.init(jax.random.key(0))
  _, m = jax.jit(method.train_step)(state, {}, jax.random.key(1),
                                    method.frozen)
  return {k: float(v) for k, v in m.items()}


def test_i2i_stage1_loss_is_the_weighted_sum_of_its_terms():
  m = _step_metrics(kdit_i2i, lambda_adv=0.5, lambda_kdl=2.0)
  assert m['g/kdl_e'] > 0 and m['g/kdl_r'] > 0 and m['g/kdl_g_feat'] > 0
  kdl = m['g/kdl_e'] + m['g/kdl_r'] + m['g/kdl_g_feat'] + m['g/kdl_g_img']
  np.testing.assert_allclose(m['g/kdl'], kdl, rtol=1e-5)
  np.testing.assert_allclose(m['g/loss'], 0.5 * m['g/adv'] + 2.0 * kdl,
                             rtol=1e-5)
  assert common.sibling('run:w', 'disc') == 'run:w:disc'


def test_x2i_stage1_loss_is_the_weighted_sum_of_its_terms():
  m = _step_metrics(kdit_x2i, lambda_adv=0.5, lambda_kdl=2.0,
                    lambda_srl=0.3)
  assert m['g/kdl_x'] > 0 and m['g/kdl_y'] > 0
  assert -0.5 <= m['g/srl'] < 0
  np.testing.assert_allclose(
      m['g/loss'], 0.5 * m['g/adv'] + 2.0 * (m['g/kdl_x'] + m['g/kdl_y'])
      + 0.3 * m['g/srl'], rtol=1e-5)
  assert x2i_lib.FIRST == 'res4'


def test_labelled_rows_keep_each_prediction_with_its_class():
  from gcjax.evaluators import common as ev_common

  class Ctx:
    def stream(self, preds, limit, seed):
      assert (limit, seed) == (5, 9)
      for i in range(2):
        rows = np.arange(3) + 3 * i
        yield ({'img': rows[:, None] * 1.0, 'label': rows % 2,
                'tgt_label': (rows + 1) % 3},
               {p: rows[:, None] * 10.0 + k for k, p in enumerate(preds)})

  got = ev_common.labelled_rows(Ctx(), ('a', 'b'), 5, 9, target='img',
                                label='label', pred_label='tgt_label',
                                transform=lambda x: np.asarray(x) * 2)
  rows = np.arange(6)
  np.testing.assert_array_equal(got.real[:, 0], rows * 2.0)
  np.testing.assert_array_equal(got.real_label, rows % 2)
  for k, name in enumerate(('a', 'b')):
    img, y = got.fake[name]
    np.testing.assert_array_equal(img[:, 0], (rows * 10.0 + k) * 2)
    np.testing.assert_array_equal(y, (rows + 1) % 3)

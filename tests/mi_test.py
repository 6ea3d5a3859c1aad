"""Tests for gcjax.objectives.mi (VEM / VID / CRD add-ons)."""

import functools
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

from gcjax.langevin import langevin
from gcjax.objectives import mi as mi_lib


class FastPRNGTestCase(parameterized.TestCase):
  """Runs each test with the non-partitionable threefry.

  NOTE: with jax 0.10's default partitionable threefry, XLA:CPU spends tens
  of seconds compiling every random initializer here; the old lowering gives
  other random bits but the same semantics, and is ~50x cheaper to compile.
  """

  def setUp(self):
    super().setUp()
    self.enter_context(jax.threefry_partitionable(False))


SHAPE = (16, 16, 3)
# Small critics so that compiling stays cheap on one CPU core.
SMALL = dict(ebm_ch=8, ebm_pool=4, n_steps=3, vid_hidden=8, crd_dim=16,
             crd_hidden=8, crd_queue=8)


def _images(seed=0, b=4):
  k1, k2 = jax.random.split(jax.random.key(seed))
  t = jax.random.uniform(k1, (b, *SHAPE), minval=-1, maxval=1)
  s = jnp.clip(t + 0.3 * jax.random.normal(k2, t.shape), -1, 1)
  return t, s


class _MLPEnergy(nn.Module):

  @nn.compact
  def __call__(self, x):
    h = nn.swish(nn.Dense(32)(x))
    h = nn.swish(nn.Dense(32)(h))
    return nn.Dense(1)(h)[:, 0]


class LossTest(FastPRNGTestCase):

  def test_ebm_loss_value(self):
    e_pos, e_neg = jnp.array([1.0, 3.0]), jnp.array([-1.0, 0.0])
    # 2 - (-0.5) + 0.1 * (5 + 0.5)
    np.testing.assert_allclose(mi_lib.ebm_loss(e_pos, e_neg, 0.1), 3.05,
                               rtol=1e-6)

  def test_ebm_toy_2d(self):
    # Positives ~ N((1, 1), 0.1^2); Langevin chains start at "student"
    # points ~ N(0, 0.5^2). Training must give positives lower energy.
    net = _MLPEnergy()
    tx = optax.adam(1e-3, b1=0.0, b2=0.999)
    params = net.init(jax.random.key(0), jnp.zeros((1, 2)))
    opt = tx.init(params)

    def sample(p, key, n=256):
      kp, ks, kl = jax.random.split(key, 3)
      pos = 1.0 + 0.1 * jax.random.normal(kp, (n, 2))
      start = 0.5 * jax.random.normal(ks, (n, 2))
      neg, _ = langevin(lambda x: net.apply(p, x), start, kl, n_steps=10,
                        step_size=0.01, noise_std=0.005, clip=None)
      return pos, start, neg

    def gap(p, key):
      pos, start, neg = sample(p, key)
      e_pos = jnp.mean(net.apply(p, pos))
      return (jnp.mean(net.apply(p, neg)) - e_pos,
              jnp.mean(net.apply(p, start)) - e_pos)

    def step(carry, i):
      p, o = carry
      pos, _, neg = sample(p, jax.random.fold_in(jax.random.key(1), i))
      loss_fn = lambda q: mi_lib.ebm_loss(net.apply(q, pos), net.apply(q, neg),
                                          0.1)
      u, o = tx.update(jax.grad(loss_fn)(p), o, p)
      return (optax.apply_updates(p, u), o), None

    gap0, _ = jax.jit(gap)(params, jax.random.key(7))
    (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(300)))(
        (params, opt))
    gap1, start_gap = jax.jit(gap)(params, jax.random.key(7))
    # Measured (this seed): gap 0.28 at init, 5.7 after 300 steps.
    self.assertGreater(float(gap1), float(gap0) + 2.0)
    self.assertGreater(float(gap1), 1.0)
    self.assertGreater(float(start_gap), 1.0)

  def test_gaussian_nll_by_hand(self):
    t = jnp.array([1.0, -1.0])
    mu = jnp.array([0.5, 0.0])
    var = jnp.array([2.0, 0.5])
    expected = np.mean([0.5 * math.log(2 * math.pi * 2.0) + 0.25 / 4.0,
                        0.5 * math.log(2 * math.pi * 0.5) + 1.0 / 1.0])
    np.testing.assert_allclose(mi_lib.gaussian_nll(t, mu, var), expected,
                               rtol=1e-6)

  def test_info_nce_random_is_log_n(self):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    unit = lambda k, n: mi_lib._l2n(jax.random.normal(k, (n, 2048)))
    z_s, z_t, mem = unit(k1, 32), unit(k2, 32), unit(k3, 224)
    loss = mi_lib.info_nce(z_s, z_t, mem, temperature=0.07)
    np.testing.assert_allclose(loss, math.log(256), rtol=0.03)
    # Perfectly aligned embeddings at low temperature: loss -> 0.
    aligned = mi_lib.info_nce(z_t, z_t, mem, temperature=0.01)
    self.assertLess(float(aligned), 1e-3)


class VIDTest(FastPRNGTestCase):

  def test_student_loss_is_lambda_times_nll(self):
    mi = mi_lib.make_mi('vid', t_shape=SHAPE, s_shape=SHAPE, lambda_mi=0.5,
                        **SMALL)
    state = mi.init(jax.random.key(0))
    t, s = _images()

    @jax.jit
    def run(state):
      (mu, var), _ = mi_lib.VID(out_ch=3, hidden=8).apply(
          {'params': state.params}, s)
      return mi.student_loss(state, t, s, {})[0], mu, var

    term, mu, var = run(state)
    mu, var = np.asarray(mu, np.float64), np.asarray(var, np.float64)
    by_hand = np.mean(0.5 * np.log(2 * np.pi * var)
                      + (np.asarray(t) - mu) ** 2 / (2 * var))
    np.testing.assert_allclose(term, 0.5 * by_hand, rtol=1e-5)
    np.testing.assert_allclose(var, 1.0, rtol=1e-4)   # vid_init_var


class MITest(FastPRNGTestCase):

  def setUp(self):
    super().setUp()
    # assert_max_traces keys on the source footprint, shared by parameters.
    chex.clear_trace_counter()

  @parameterized.parameters('none', 'vem', 'vid', 'crd')
  def test_jitted_step_finite_frozen_critic(self, kind):
    mi = mi_lib.make_mi(kind, t_shape=SHAPE, s_shape=SHAPE, **SMALL)
    t, s = _images(b=4)
    state0 = state = jax.jit(mi.init)(jax.random.key(0))

    @jax.jit
    @functools.partial(chex.assert_max_traces, n=1)
    def step(state, t, s, key):
      new, aux, m = mi.update(state, t, jax.lax.stop_gradient(s), key)
      loss_fn = lambda st, x: mi.student_loss(st, t, x, aux)
      (term, m_s), (g_state, g_s) = jax.value_and_grad(
          loss_fn, argnums=(0, 1), has_aux=True, allow_int=True)(new, s)
      return new, {**m, **m_s}, term, g_state, g_s, aux

    for i in range(3):
      new, m, term, g_state, g_s, aux = step(state, t, s, jax.random.key(i))
      chex.assert_tree_all_finite((new, m, term))
      state = new

    # The critic is frozen inside the student term.
    for leaf in jax.tree.leaves(g_state):
      if leaf.dtype != jax.dtypes.float0:   # integer leaves (counts, ptr)
        np.testing.assert_array_equal(np.asarray(leaf), 0)
    if kind == 'none':
      self.assertEqual(m, {})
      self.assertEqual(float(term), 0.0)
      return
    self.assertGreater(float(jnp.abs(g_s).sum()), 0.0)
    self.assertIn('mi/student_term', m)
    expected = {'vem': ('ebm/e_pos', 'ebm/e_neg', 'ebm/gap', 'ebm/loss',
                        'ebm/step_norm'),
                'vid': ('vid/nll',), 'crd': ('crd/nce',)}[kind]
    for name in expected:
      self.assertIn(name, m)
      self.assertEqual(np.shape(m[name]), ())
    if kind == 'vem':   # Langevin samples reused by the student term
      chex.assert_shape(aux['t_neg'], t.shape)
      self.assertLessEqual(float(jnp.max(jnp.abs(aux['t_neg']))), 1.0)
      self.assertGreater(float(m['ebm/step_norm']), 0.0)
      # move per step / noise per step (sigma sqrt(D)), D = 16 * 16 * 3.
      np.testing.assert_allclose(
          m['ebm/move_noise_ratio'],
          m['ebm/step_norm'] / (0.005 * math.sqrt(16 * 16 * 3)), rtol=1e-5)
    if kind == 'crd':   # 3 batches of 4 went through a queue of 8
      self.assertEqual(int(state['ptr']), 4)
      np.testing.assert_array_equal(aux['queue'][4:], state['queue'][4:])
      self.assertFalse(np.allclose(aux['queue'][:4], state['queue'][:4]))
    # The critic trained.
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state0, state)
    self.assertTrue(any(jax.tree.leaves(changed)))

  def test_ebm_learns_the_pairing(self):
    # t is a deterministic function of s (its negative, smooth images): a
    # few hundred EBM updates against Langevin negatives must make held-out
    # shuffled pairs clearly higher in energy than true ones.
    from gcjax.evaluators.ebm_probe import probe_energies
    shape = (16, 16, 1)
    mi = mi_lib.make_mi('vem', t_shape=shape, s_shape=shape, ebm_ch=8,
                        ebm_blocks=3, n_steps=5, lr=1e-3)

    def pairs(key, b=16):
      low = jax.random.uniform(key, (b, 4, 4, 1), minval=-1, maxval=1)
      s = jax.image.resize(low, (b, *shape), 'linear')
      return -s, s

    @jax.jit
    def train(state, key):
      def body(i, st):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        t, s = pairs(k1)
        return mi.update(st, t, s, k2)[0]
      return jax.lax.fori_loop(0, 300, body, state)

    state = train(jax.jit(mi.init)(jax.random.key(0)), jax.random.key(1))
    module, variables = mi.critic(state)
    t, s = pairs(jax.random.key(99), b=64)
    energy = lambda a, b: module.apply(
        variables, jnp.concatenate([a, b], -1), train=False)[0]
    e = jax.jit(lambda t, s: probe_energies(
        energy, t, s, jax.random.key(5), n_steps=module.n_steps,
        step_size=module.step_size, noise_std=module.noise_std,
        clip=module.clip, clip_at=module.clip_at))(t, s)
    gap = e['e_shuffled'] - e['e_pos']
    self.assertGreater(float(jnp.mean(gap)), 0.0)
    self.assertGreater(float(jnp.mean(gap > 0)), 0.8)
    self.assertGreater(float(jnp.mean(gap)),
                       3 * float(jnp.std(e['e_pos'])) / 8)   # clear margin

  def test_config_and_errors(self):
    cfg = {'kind': 'vid', 'positive': 'target', 'lambda_mi': 0.1,
           'vid_hidden': 4}
    mi = mi_lib.make_mi_from_config(cfg, t_shape=SHAPE, s_shape=SHAPE,
                                    total_steps=10)
    self.assertEqual(mi.kind, 'vid')
    # The shared config section (grad_clip 0 means off) builds every kind.
    for kind in mi_lib.KINDS:
      c = {**cfg, 'kind': kind, 'grad_clip': 0.0, 'clip': [-1.0, 1.0]}
      self.assertEqual(mi_lib.make_mi_from_config(
          c, t_shape=SHAPE, s_shape=SHAPE, total_steps=10).kind, kind)
    with self.assertRaisesRegex(ValueError, 'unknown keys'):
      mi_lib.make_mi_from_config({'kind': 'vem', 'n_step': 3}, t_shape=SHAPE,
                                 s_shape=SHAPE, total_steps=10)
    with self.assertRaisesRegex(ValueError, 'mi kind'):
      mi_lib.make_mi('ebm', t_shape=SHAPE, s_shape=SHAPE)
    with self.assertRaisesRegex(ValueError, 'equal H, W'):
      mi_lib.make_mi('vem', t_shape=SHAPE, s_shape=(8, 8, 3))


if __name__ == '__main__':
  absltest.main()

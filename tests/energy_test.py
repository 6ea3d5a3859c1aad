"""Tests for gcjax.models.energy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from gcjax.models.energy import (
  EnergyNet,
  SNConv,
  VEMEnergyNet,
  n_halvings,
  power_iteration,
  spectral_scale,
)


class FastPRNGTestCase(parameterized.TestCase):
  """Runs each test with the non-partitionable threefry.

  NOTE: with jax 0.10's default partitionable threefry, XLA:CPU spends tens
  of seconds compiling every random initializer here; the old lowering gives
  other random bits but the same semantics, and is ~50x cheaper to compile.
  """

  def setUp(self):
    super().setUp()
    self.enter_context(jax.threefry_partitionable(False))


class EnergyNetTest(FastPRNGTestCase):

  @parameterized.parameters((16, 3, 1), (28, 3, 1), (32, 4, 1), (256, 7, 3))
  def test_shapes_and_depth(self, hw, n_blocks, c):
    # Shapes only: eval_shape traces without compiling (cheap on 1 core).
    net = EnergyNet(ch=8)
    t = jax.ShapeDtypeStruct((2, hw, hw, c), jnp.float32)

    def fwd(key, a, b):
      v = net.init(key, a, b, train=False)
      return net.apply(v, a, b, train=False)

    e, feats = jax.eval_shape(fwd, jax.random.key(0), t, t)
    chex.assert_shape(e, (2,))
    blocks = [k for k in feats if k.startswith('block')]
    self.assertLen(blocks, n_blocks)
    chex.assert_shape(feats[blocks[-1]], (2, 1, 1, 8))
    chex.assert_shape(feats['pooled'], (2, 8))

  def test_n_halvings(self):
    self.assertEqual([n_halvings(k) for k in (1, 2, 7, 8, 128)],
                     [0, 1, 2, 3, 7])

  def test_examples_are_independent(self):
    # Langevin follows grad of the summed energy: example i's energy must not
    # read example j (no batch norm across the batch).
    net = EnergyNet(ch=8)
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    t = jax.random.uniform(k1, (3, 16, 16, 3), minval=-1, maxval=1)
    s = jax.random.uniform(k2, (3, 16, 16, 3), minval=-1, maxval=1)

    @jax.jit
    def run(t, s):
      v = net.init(k3, t, s, train=False)
      energy = lambda a, b: net.apply(v, a, b, train=False)[0]
      g = jax.grad(lambda x: energy(x, s)[0])(t)
      return energy(t, s), energy(t[1:2], s[1:2]), g

    e_all, e_one, g = run(t, s)
    np.testing.assert_allclose(e_all[1], e_one[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(g[1:]), 0.0)
    self.assertGreater(float(jnp.abs(g[0]).sum()), 0.0)

  def test_train_updates_power_iteration(self):
    net = EnergyNet(ch=8)
    t = jnp.ones((2, 16, 16, 3)) * 0.5
    v = jax.jit(lambda k: net.init(k, t, t, train=False))(jax.random.key(2))
    stats0 = v['batch_stats']
    step = jax.jit(lambda stats: net.apply(
        {'params': v['params'], 'batch_stats': stats}, t, t, train=True,
        mutable=['batch_stats'])[1]['batch_stats'])
    new = step(stats0)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), stats0,
                           new)
    self.assertTrue(any(jax.tree.leaves(changed)))
    # Repeated power iteration: stored sigma -> top singular value.
    stats = new
    for _ in range(30):
      stats = step(stats)
    kernel = v['params']['block0']['conv1']['Conv_0']['kernel']
    top = np.linalg.svd(np.asarray(kernel).reshape(-1, kernel.shape[-1]),
                        compute_uv=False)[0]
    sigma = stats['block0']['conv1']['SpectralNorm_0']['Conv_0/kernel/sigma']
    np.testing.assert_allclose(float(sigma), top, rtol=1e-2)

  def test_no_spectral_norm_has_no_stats(self):
    net = EnergyNet(ch=8, spectral_norm=False)
    t = jnp.zeros((1, 16, 16, 3))
    v = jax.eval_shape(lambda k: net.init(k, t, t, train=False),
                       jax.random.key(0))
    self.assertNotIn('batch_stats', v)

  def test_bad_shapes(self):
    net = EnergyNet(ch=8)
    with self.assertRaisesRegex(ValueError, 'equal B, H, W'):
      net.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)),
               jnp.zeros((1, 8, 8, 3)), train=False)


class VEMEnergyNetTest(FastPRNGTestCase):
  """The VEM authors' net."""

  def test_shapes_widths_and_halving_stops_at_1x1(self):
    net = VEMEnergyNet(ch=8, n_blocks=7)
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)

    def fwd(key, a, b):
      v = net.init(key, a, b, train=False)
      return net.apply(v, a, b, train=False)

    e, feats = jax.eval_shape(fwd, jax.random.key(0), x, x)
    chex.assert_shape(e, (2,))
    chex.assert_shape(feats['stem'], (2, 32, 32, 4))       # pooled, C0/2
    sides = [16, 8, 4, 2, 1, 1, 1]                          # stops at 1x1
    widths = [8, 16, 16, 16, 16, 16, 16]                    # C0 -> 2 C0
    for i, (side, w) in enumerate(zip(sides, widths)):
      chex.assert_shape(feats[f'block{i}'], (2, side, side, w))
    chex.assert_shape(feats['pooled'], (2, 16))

  def test_every_block_is_its_shortcut_at_init(self):
    net = VEMEnergyNet(ch=8, n_blocks=4)
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    t = jax.random.uniform(k1, (2, 32, 32, 3), minval=-1, maxval=1)
    s = jax.random.uniform(k2, (2, 32, 32, 3), minval=-1, maxval=1)
    v = jax.jit(lambda k: net.init(k, t, s, train=False))(k3)

    def zero_residual(path, x):
      names = [getattr(p, 'key', '') for p in path]
      return jnp.zeros_like(x) if 'conv2' in names else x

    v0 = jax.tree_util.tree_map_with_path(zero_residual, v)
    apply = jax.jit(lambda v: net.apply(v, t, s, train=False))
    (e, feats), (e0, feats0) = apply(v), apply(v0)
    for i in range(4):
      scale = float(jnp.max(jnp.abs(feats0[f'block{i}'])))
      self.assertGreater(scale, 1e-3)
      np.testing.assert_allclose(feats[f'block{i}'], feats0[f'block{i}'],
                                 atol=1e-8 * max(scale, 1.0))
    np.testing.assert_allclose(e, e0, atol=1e-7)

  def test_lower_bounded_sn_never_scales_up(self):
    rng = np.random.default_rng(0)
    for std in (1e-10, 1e-3, 0.05, 1.0, 30.0):
      mat = jnp.asarray(std * rng.standard_normal((27, 5)), jnp.float32)
      u, _ = power_iteration(mat, jnp.ones((5,)) / np.sqrt(5), 50)
      scale, sigma = spectral_scale(mat, u, lower_bound=True)
      top = np.linalg.svd(np.asarray(mat), compute_uv=False)[0]
      np.testing.assert_allclose(sigma, top, rtol=5e-3)   # eps at 1e-10
      self.assertLessEqual(float(scale), 1.0 + 1e-6)
      # min(sigma, 1): only kernels above unit norm are scaled (to 1).
      np.testing.assert_allclose(float(scale * sigma), min(top, 1.0),
                                 rtol=5e-3)
      plain, _ = spectral_scale(mat, u, lower_bound=False)
      np.testing.assert_allclose(float(plain * sigma), 1.0, rtol=1e-4)

  def test_sn_conv_tiny_kernel_stays_tiny(self):
    x = jnp.ones((1, 4, 4, 2))
    for lower, expect_tiny in ((True, True), (False, False)):
      conv = SNConv(3, lower_bound=lower, init_std=1e-10)
      v = conv.init(jax.random.key(0), x, train=False)
      y = conv.apply(v, x, train=False)
      self.assertEqual(bool(jnp.max(jnp.abs(y)) < 1e-8), expect_tiny)

  def test_train_advances_power_iteration(self):
    net = VEMEnergyNet(ch=4, n_blocks=2)
    t = jnp.ones((2, 16, 16, 1)) * 0.3
    v = jax.jit(lambda k: net.init(k, t, t, train=False))(jax.random.key(1))
    _, upd = jax.jit(lambda v: net.apply(v, t, t, train=True,
                                         mutable=['batch_stats']))(v)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                           v['batch_stats'], upd['batch_stats'])
    self.assertTrue(any(jax.tree.leaves(changed)))


if __name__ == '__main__':
  absltest.main()

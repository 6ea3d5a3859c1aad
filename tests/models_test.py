"""Tests for gcjax.models: layers, U-Net, PatchGAN, ResNet, DCGAN."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from gcjax.models import dcgan, layers, patchgan, resnet, unet

KEYS = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}


def n_params(module, *shapes, **kwargs) -> int:
  """Parameter count from abstract init (nothing is computed)."""
  args = [jnp.zeros(s) for s in shapes]
  v = jax.eval_shape(lambda: module.init(KEYS, *args, **kwargs))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v['params']))


def fast_init(module, *args, **kwargs):
  """Variables of ``module`` filled from numpy, not jax.random.

  Compiling jax.random.normal for every parameter shape dominates a naive
  init on CPU; shapes come from eval_shape and values from numpy instead.
  """
  shapes = jax.eval_shape(lambda: module.init(KEYS, *args, **kwargs))
  rng = np.random.default_rng(0)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']"):
      return jnp.ones(s.shape)
    if name.endswith("['mean']"):
      return jnp.zeros(s.shape)
    base = 1.0 if name.endswith("['scale']") else 0.0
    return jnp.asarray(base + 0.2 * rng.standard_normal(s.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def init_apply(module, x, train=False):
  v = fast_init(module, x)
  if train:
    (y, f), _ = jax.jit(lambda v, x: module.apply(
        v, x, train=True, rngs={'dropout': KEYS['dropout']},
        mutable=['batch_stats']))(v, x)
    return v, y, f
  y, f = jax.jit(module.apply)(v, x)
  return v, y, f


class LayersTest(parameterized.TestCase):

  def test_reflect_pad_hand_values(self):
    x = jnp.array([1., 2., 3.]).reshape(1, 1, 3, 1)
    x = jnp.broadcast_to(x, (1, 3, 3, 1))
    y = layers.reflect_pad(x, 2)
    np.testing.assert_array_equal(y[0, 0, :, 0], [3, 2, 1, 2, 3, 2, 1])
    self.assertEqual(y.shape, (1, 7, 7, 1))

  def test_reflect_pad_too_large_raises(self):
    with self.assertRaisesRegex(ValueError, 'reflection pad 3'):
      layers.reflect_pad(jnp.zeros((1, 3, 3, 1)), 3)

  def test_instance_norm_hand_values(self):
    # Per image and channel over H, W: values 1..4 -> mean 2.5, var 1.25.
    x = jnp.array([1., 2., 3., 4.]).reshape(1, 2, 2, 1)
    x = jnp.concatenate([x, 10 * x], axis=-1)      # 2nd channel: own stats.
    x = jnp.concatenate([x, x + 7.0], axis=0)      # 2nd image: shifted.
    y, _ = layers.InstanceNorm().init_with_output(KEYS, x)
    want = (np.array([1., 2., 3., 4.]) - 2.5) / np.sqrt(1.25 + 1e-5)
    np.testing.assert_allclose(y[0, :, :, 0].ravel(), want, rtol=1e-6)
    np.testing.assert_allclose(y[1, :, :, 0].ravel(), want, rtol=1e-6)
    want10 = (np.array([10., 20., 30., 40.]) - 25.) / np.sqrt(125. + 1e-5)
    np.testing.assert_allclose(y[0, :, :, 1].ravel(), want10, rtol=1e-6)

  def test_instance_norm_affine_params(self):
    m = layers.InstanceNorm(affine=True)
    v = m.init(KEYS, jnp.zeros((1, 2, 2, 5)))
    chex.assert_shape([v['params']['scale'], v['params']['bias']], (5,))
    self.assertEmpty(layers.InstanceNorm().init(KEYS, jnp.zeros((1, 2, 2, 5))))

  @parameterized.parameters((4, 2, 1, 0, 8), (3, 2, 1, 1, 8), (4, 1, 0, 0, 7))
  def test_conv_transpose_output_size(self, k, s, p, op, want):
    m = layers.conv_transpose(2, k, s, p, op)
    y, _ = jax.eval_shape(
        lambda: m.init_with_output(KEYS, jnp.zeros((1, 4, 4, 3))))
    # PyTorch: (H - 1) * s - 2p + k + op.
    self.assertEqual(y.shape, (1, want, want, 2))
    self.assertEqual((4 - 1) * s - 2 * p + k + op, want)

  def test_avg_pool_excludes_padding(self):
    y = layers.avg_pool_3x3_s2(jnp.ones((1, 6, 6, 1)))
    np.testing.assert_allclose(y, np.ones((1, 3, 3, 1)))
    x = jnp.arange(16.).reshape(1, 4, 4, 1)
    # Top-left window covers rows/cols {0, 1}: mean of 0, 1, 4, 5.
    self.assertAlmostEqual(float(layers.avg_pool_3x3_s2(x)[0, 0, 0, 0]), 2.5)

  def test_bad_norm_raises(self):
    with self.assertRaisesRegex(ValueError, "got 'group'"):
      layers.check_norm('group')


class UNetTest(parameterized.TestCase):

  @parameterized.parameters(('batch', 0), ('instance', 1), ('none', 0))
  def test_shapes_and_feats(self, norm, n_res):
    m = unet.UNetGenerator(ngf=2, out_ch=3, norm=norm, n_res=n_res)
    x = jnp.linspace(-1, 1, 2 * 16 * 16).reshape(2, 16, 16, 1)
    _, y, f = init_apply(m, x, train=True)
    chex.assert_shape(y, (2, 16, 16, 3))
    self.assertLessEqual(float(jnp.max(jnp.abs(y))), 1.0)
    self.assertEqual(sorted(f), sorted([f'down{i}' for i in range(4)] +
                                       [f'up{i}' for i in range(4)]))
    for i, c in enumerate([2, 4, 8, 16]):
      chex.assert_shape(f[f'down{i}'], (2, 8 >> i, 8 >> i, c))
    for i, c in enumerate([3, 2, 4, 8]):
      chex.assert_shape(f[f'up{i}'], (2, 16 >> i, 16 >> i, c))
    chex.assert_trees_all_close(jnp.tanh(f['up0']), y)

  def test_param_counts_match_pix2pix(self):
    # pix2pix unet_256: 54.41M at ngf 64 (GAN-Compression: 54.4M); 3.40M
    # at ngf 16.
    self.assertEqual(n_params(unet.UNetGenerator(64), (1, 256, 256, 3)),
                     54_413_955)
    self.assertEqual(n_params(unet.UNetGenerator(16), (1, 256, 256, 3)),
                     3_404_451)

  def test_bias_convention(self):
    v = jax.eval_shape(lambda: unet.UNetGenerator(4).init(
        KEYS, jnp.zeros((1, 32, 32, 3))))['params']
    for name, p in v.items():
      if name.endswith('_conv'):
        self.assertEqual('bias' in p, name == 'up0_conv', name)
    v = jax.eval_shape(lambda: unet.UNetGenerator(4, norm='instance').init(
        KEYS, jnp.zeros((1, 32, 32, 3))))['params']
    self.assertTrue(all('bias' in p for n, p in v.items()
                        if n.endswith('_conv')))

  def test_default_depth_gives_1x1_bottleneck(self):
    m = unet.UNetGenerator(ngf=1, norm='none')
    _, f = jax.eval_shape(lambda: m.init_with_output(
        KEYS, jnp.zeros((1, 32, 64, 3)))[0])
    chex.assert_shape(f['down4'], (1, 1, 2, 8))
    with self.assertRaisesRegex(ValueError, 'power of two'):
      jax.eval_shape(lambda: m.init(KEYS, jnp.zeros((1, 24, 24, 3))))

  def test_dropout_only_in_train_and_deep_levels(self):
    # Dropout draws from the 'dropout' rng, so applying without one fails
    # exactly when a dropout layer runs. Level 4 exists from 6 levels on.
    def run(ngf_dropout, side, train):
      m = unet.UNetGenerator(ngf=1, norm='none', dropout=ngf_dropout)
      x = jnp.zeros((1, side, side, 3))
      v = jax.eval_shape(lambda: m.init({'params': KEYS['params']}, x))
      return jax.eval_shape(lambda v: m.apply(v, x, train=train), v)

    with self.assertRaisesRegex(Exception, 'dropout'):
      run(0.5, 64, train=True)
    run(0.5, 64, train=False)
    run(0.0, 64, train=True)
    run(0.5, 32, train=True)  # 5 levels: no dropout level.


class PatchGANTest(parameterized.TestCase):

  @parameterized.parameters('batch', 'layer')
  def test_shapes(self, norm):
    m = patchgan.PatchDiscriminator(ndf=4, n_layers=3, norm=norm)
    _, y, f = init_apply(m, jnp.zeros((2, 64, 64, 6)), train=True)
    chex.assert_shape(y, (2, 6, 6, 1))
    self.assertEqual(sorted(f), ['layer0', 'layer1', 'layer2', 'layer3'])
    chex.assert_shape(f['layer3'], (2, 7, 7, 32))

  def test_receptive_field_is_70(self):
    m = patchgan.PatchDiscriminator(ndf=1, norm='none')
    x = jnp.zeros((1, 128, 128, 1))
    v = jax.tree.map(lambda s: jnp.ones(s.shape),  # > 0: nothing cancels.
                     jax.eval_shape(lambda: m.init(KEYS, x)))
    g = jax.grad(lambda x: m.apply(v, x)[0][0, 6, 6, 0])(x)
    rows = np.nonzero(np.asarray(jnp.abs(g[0, :, :, 0]).sum(1)))[0]
    self.assertEqual(rows.max() - rows.min() + 1, 70)

  def test_param_count(self):
    # pix2pix 70x70 PatchGAN on 6 input channels: 2.769M.
    self.assertEqual(n_params(patchgan.PatchDiscriminator(),
                              (1, 256, 256, 6)), 2_768_705)

  def test_multiscale(self):
    m = patchgan.MultiScaleDiscriminator(num_D=2, ndf=2, norm='instance')
    _, ys, f = init_apply(m, jnp.zeros((1, 64, 64, 3)))
    self.assertLen(ys, 2)
    chex.assert_shape(ys[0], (1, 6, 6, 1))
    chex.assert_shape(ys[1], (1, 2, 2, 1))
    self.assertIn('D1/layer3', f)


class ResnetTest(parameterized.TestCase):

  @parameterized.parameters((False, 'instance'), (True, 'batch'))
  def test_shapes_and_feats(self, mobile, norm):
    cls = resnet.MobileResnetGenerator if mobile else resnet.ResnetGenerator
    m = cls(ngf=2, n_blocks=2, norm=norm)
    x = jnp.linspace(-1, 1, 2 * 16 * 16 * 3).reshape(2, 16, 16, 3)
    _, y, f = init_apply(m, x, train=True)
    chex.assert_shape(y, (2, 16, 16, 3))
    want = {'stem': (2, 16, 16, 2), 'down0': (2, 8, 8, 4),
            'down1': (2, 4, 4, 8), 'block0': (2, 4, 4, 8),
            'block1': (2, 4, 4, 8), 'up0': (2, 8, 8, 4), 'up1': (2, 16, 16, 2)}
    self.assertEqual({k: v.shape for k, v in f.items()}, want)

  def test_param_counts(self):
    shape = (1, 32, 32, 3)
    self.assertEqual(n_params(resnet.ResnetGenerator(), shape), 11_378_179)
    self.assertEqual(n_params(resnet.ResnetGenerator(affine=True), shape),
                     11_388_675)
    self.assertEqual(n_params(resnet.MobileResnetGenerator(), shape), 137_347)

  def test_mobile_block_is_depthwise_separable(self):
    v = jax.eval_shape(lambda: resnet.MobileResnetGenerator(ngf=4).init(
        KEYS, jnp.zeros((1, 16, 16, 3))))['params']['block0']['sep1']
    self.assertEqual(v['dw']['kernel'].shape, (3, 3, 1, 16))
    self.assertEqual(v['pw']['kernel'].shape, (1, 1, 16, 16))

  def test_identity_blocks_pass_through(self):
    # With no norm and a zero second conv (kernel and bias) a block is the
    # identity.
    m = resnet.ResnetGenerator(ngf=2, n_blocks=1, norm='none')
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 8, 8, 3)),
                    jnp.float32)
    v = fast_init(m, x)
    v = jax.tree_util.tree_map_with_path(
        lambda p, a: jnp.zeros_like(a) if 'conv2' in str(p) else a, v)
    _, f = m.apply(v, x)
    chex.assert_trees_all_close(f['block0'], f['down1'])



class FastFormsTest(parameterized.TestCase):
  """The forms gcjax runs (padded conv + crop, sub-pixel transposed convs,
  shift-and-add depthwise convs) compute the plain formulation's function:
  the one traced inside ``layers.dilated_transposed_convs()``.

  In float64: these nets' float32 gradients sit ~7e-4 (relative) from the
  float64 ones in both forms alike (eval batch norm of random weights is
  ill-conditioned), so a float32 comparison measures rounding, not the
  formulation; in float64 the forms agree to ~1e-12.
  """

  @parameterized.named_parameters(
      ('resnet', resnet.ResnetGenerator(ngf=4, n_blocks=2, affine=True)),
      ('mobile', resnet.MobileResnetGenerator(ngf=4, n_blocks=2)),
      ('deep_unet', unet.UNetGenerator(ngf=4, num_downs=4, n_res=2)))
  def test_values_and_grads_match_plain_form(self, m):
    x = np.random.default_rng(3).uniform(-1, 1, (2, 16, 16, 3))
    v = jax.tree.map(np.asarray, fast_init(m, jnp.asarray(x, jnp.float32)))

    def loss(v, x):
      y, f = m.apply(v, x)
      return jnp.sum(jnp.sin(3 * y)) + sum(jnp.mean(a) for a in f.values())

    def run():
      # A fresh callable per formulation: JAX caches traces per callable and
      # the formulation context is not part of the key.
      fn = jax.value_and_grad(lambda v, x: loss(v, x), argnums=(0, 1))
      args = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (v, x))
      return jax.jit(fn)(*args), str(jax.make_jaxpr(fn)(*args))

    with jax.enable_x64(True):
      fast, fast_jaxpr = run()
      with layers.dilated_transposed_convs():
        plain, plain_jaxpr = run()
    self.assertTrue(fast_jaxpr != plain_jaxpr, 'the forms did not differ')
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(plain)):
      self.assertEqual(a.dtype, jnp.float64)
      a, b = np.asarray(a), np.asarray(b)
      np.testing.assert_allclose(a, b, rtol=0,
                                 atol=1e-9 * (1 + np.max(np.abs(b))))


class DCGANTest(parameterized.TestCase):

  @parameterized.parameters((64, 'batch'), (32, 'layer'), (28, 'none'))
  def test_shapes(self, res, d_norm):
    g = dcgan.DCGANGenerator(d=2, nz=5, out_ch=1, resolution=res)
    _, y, f = init_apply(g, jnp.ones((3, 5)), train=True)
    chex.assert_shape(y, (3, res, res, 1))
    self.assertLen(f, {64: 4, 32: 3, 28: 2}[res])
    d = dcgan.DCGANDiscriminator(d=2, resolution=res, norm=d_norm)
    _, logit, fd = init_apply(d, y, train=True)
    chex.assert_shape(logit, (3, 1))
    self.assertLen(fd, len(f))

  @parameterized.product(res=[64, 32, 28], d=[1, 3, 8], nz=[4, 100],
                         out_ch=[1, 3])
  def test_param_formula(self, res, d, nz, out_ch):
    got = n_params(dcgan.DCGANGenerator(d, nz, out_ch, res), (1, nz))
    self.assertEqual(got, dcgan.dcgan_generator_params(d, nz, out_ch, res))

  def test_face_teacher_size_and_quadratic_growth(self):
    self.assertEqual(dcgan.dcgan_generator_params(64, 100, 3, 64), 3_576_704)
    # Quadratic in d: constant second differences 2 * 16 * 42.
    p = [dcgan.dcgan_generator_params(d) for d in range(5, 12)]
    self.assertEqual(set(np.diff(p, 2).tolist()), {2 * 16 * 42})

  def test_bad_inputs_raise(self):
    with self.assertRaisesRegex(ValueError, r'\[B, 100\]'):
      jax.eval_shape(lambda: dcgan.DCGANGenerator().init(
          KEYS, jnp.zeros((1, 10))))
    with self.assertRaisesRegex(ValueError, 'resolution'):
      dcgan.dcgan_generator_params(8, res=48)


if __name__ == '__main__':
  absltest.main()

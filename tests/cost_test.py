"""Tests for gcjax.metrics.cost: hand-computed MACs and the pix2pix U-Net."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from gcjax.metrics import cost
from gcjax.models.unet import UNetGenerator


def _macs_of(module, x_shape):
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  v = jax.eval_shape(module.init, jax.random.key(0), x)
  return cost.count_macs(module.apply, v, x), v


def _pix2pix_unet_macs(ngf, size=256, n=8):
  """Per-layer sum for pix2pix unet_256 (k=4, s=2 everywhere)."""
  ch = [ngf * min(2**i, 8) for i in range(n)]
  enc = dec_lit = 0
  for i in range(n):
    c_in = 3 if i == 0 else ch[i - 1]
    out_side = size // 2**(i + 1)
    enc += out_side**2 * ch[i] * 16 * c_in
    # Decoder level i: input = ch[i] (innermost) or 2 * ch[i] (concat).
    d_in = ch[i] if i == n - 1 else 2 * ch[i]
    d_out = 3 if i == 0 else ch[i - 1]
    dec_lit += (size // 2**i)**2 * d_out * 16 * d_in
  return enc + dec_lit, enc + dec_lit // 4


class CostTest(parameterized.TestCase):

  def test_count_params(self):
    tree = {'a': jnp.zeros((3, 4)), 'b': [jnp.zeros(5), np.zeros((2, 2))]}
    self.assertEqual(cost.count_params(tree), 21)

  def test_conv(self):
    m = nn.Conv(8, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    macs, v = _macs_of(m, (2, 16, 16, 5))
    want = 2 * 8 * 8 * 8 * 3 * 3 * 5
    self.assertEqual(macs, {'literature': want, 'true': want})
    self.assertEqual(cost.count_params(v), 3 * 3 * 5 * 8 + 8)

  def test_grouped_conv(self):
    m = nn.Conv(8, (3, 3), padding='SAME', feature_group_count=4)
    macs, _ = _macs_of(m, (1, 6, 6, 4))
    self.assertEqual(macs['true'], 6 * 6 * 8 * 3 * 3 * 1)

  def test_transposed_conv(self):
    # PyTorch ConvTranspose2d(6, 4, k=4, s=2, p=1): 5x5 -> 10x10.
    m = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))
    macs, v = _macs_of(m, (1, 5, 5, 6))
    x = jax.ShapeDtypeStruct((1, 5, 5, 6), jnp.float32)
    self.assertEqual(jax.eval_shape(m.apply, v, x).shape, (1, 10, 10, 4))
    self.assertEqual(macs['literature'], 10 * 10 * 4 * 4 * 4 * 6)
    # Scatter form: each input element times the k*k*C_out kernel.
    self.assertEqual(macs['true'], 5 * 5 * 6 * 4 * 4 * 4)

  def test_dense_and_batched_matmul(self):
    macs, _ = _macs_of(nn.Dense(7), (3, 11))
    self.assertEqual(macs['true'], 3 * 11 * 7)
    f = lambda a, b: jnp.einsum('bij,bjk->bik', a, b)
    got = cost.count_macs(f, jnp.zeros((2, 3, 4)), jnp.zeros((2, 4, 5)))
    self.assertEqual(got['literature'], 2 * 3 * 4 * 5)

  def test_recurses_into_jit_custom_jvp_scan_and_cond(self):
    w = jnp.zeros((4, 4))

    @jax.jit
    def inner(x):
      return jax.nn.gelu(x @ w)

    def f(x):
      y, _ = jax.lax.scan(lambda c, _: (inner(c), None), x, None, length=3)
      return jax.lax.cond(y.sum() > 0, lambda z: z @ w @ w, lambda z: z, y)

    got = cost.count_macs(f, jnp.zeros((2, 4)))
    self.assertEqual(got['true'], 3 * 2 * 4 * 4 + 2 * 2 * 4 * 4)

  def test_xla_flops_cross_check(self):
    m = nn.Conv(16, (3, 3), padding='VALID', use_bias=False)
    macs, v = _macs_of(m, (1, 12, 12, 8))
    flops = cost.xla_flops(m.apply, v, jax.ShapeDtypeStruct((1, 12, 12, 8),
                                                            jnp.float32))
    np.testing.assert_allclose(flops / 2, macs['true'], rtol=0.02)

  def test_counting_a_jitted_fn_leaves_its_fast_trace_alone(self):
    from gcjax.models import layers
    m = layers.DepthwiseConv(3)
    x = jnp.ones((1, 6, 6, 4))
    v = m.init(jax.random.key(0), x)
    f = jax.jit(m.apply)
    f(v, x)   # a trace of the fast form exists: counting must not reuse it
    self.assertEqual(cost.count_macs(f, v, x)['true'], 4 * 4 * 4 * 9)
    self.assertEqual(cost.count_macs(m.apply, v, x)['true'], 4 * 4 * 4 * 9)
    # The call after counting runs the shift-and-add form, not the grouped
    # conv the accounting context emits.
    hlo = f.lower(v, x).as_text()
    self.assertNotIn('feature_group_count', hlo)

  def test_xla_flops_skip_padding_taps(self):
    # Documented in cost.xla_flops and every results.md: on a 2x2 input a
    # 4x4 stride-2 pad-1 conv touches real pixels with 4 of its 16 taps.
    m = nn.Conv(16, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                use_bias=False)
    macs, v = _macs_of(m, (1, 2, 2, 8))
    flops = cost.xla_flops(m.apply, v, jax.ShapeDtypeStruct((1, 2, 2, 8),
                                                            jnp.float32))
    self.assertEqual(macs['true'], 16 * 8 * 16)
    np.testing.assert_allclose(flops / 2, macs['true'] / 4, rtol=0.02)

  @parameterized.named_parameters(
      # VEM paper Table 1 (torchprofile): 18.60G teacher, 1.22G student.
      # NOTE: the per-layer sum of unet_256 gives 18.14G for ngf 64 (2.5%
      # under the published 18.60G) while it reproduces the student's 1.22G.
      # torchprofile's handlers (convolution: output elements x in_channels
      # x k*k, transposed too; batch_norm 0; leaky_relu 2M elements here)
      # give the same 18.14G, and no rule that reproduces the student's
      # 1.219G adds 0.46G to the teacher, so the teacher tolerance is 3%.
      ('teacher', 64, 18.60e9, 0.03, 6.05e9, 54.41e6),
      ('student', 16, 1.22e9, 0.02, 0.41e9, 3.40e6),
  )
  def test_pix2pix_unet(self, ngf, paper_lit, lit_tol, true_g, params):
    macs, v = _macs_of(UNetGenerator(ngf=ngf), (1, 256, 256, 3))
    want_lit, want_true = _pix2pix_unet_macs(ngf)
    self.assertEqual(macs, {'literature': want_lit, 'true': want_true})
    np.testing.assert_allclose(macs['literature'], paper_lit, rtol=lit_tol)
    np.testing.assert_allclose(macs['true'], true_g, rtol=0.02)
    np.testing.assert_allclose(cost.count_params(v['params']), params,
                               rtol=0.002)

  def test_matmul_rate_is_a_positive_mac_rate(self):
    self.assertGreater(cost.matmul_rate(n=64, n_iters=2), 0.0)

  def test_measure_latency(self):
    f = jax.jit(lambda x: jnp.tanh(x @ x))
    r = cost.measure_latency(f, (jnp.ones((8, 8)),), n_warmup=1, n_iters=5)
    self.assertGreater(r['median_s'], 0.0)
    self.assertLessEqual(r['median_s'], r['p90_s'])


if __name__ == '__main__':
  absltest.main()

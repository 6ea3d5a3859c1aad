"""Reformulated layers (sub-pixel and matmul transposed convs, depthwise
shifts, padded-and-cropped VALID convs) equal their plain forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcjax.models import layers


def _dilated(x, k, s, lo, hi):
  return jax.lax.conv_general_dilated(
      x, k, (1, 1), ((lo, hi), (lo, hi)), lhs_dilation=(s, s),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('k,s,p,op', [(4, 2, 1, 0), (3, 2, 1, 1),
                                      (4, 4, 0, 0), (2, 2, 0, 0)])
def test_subpixel_matches_dilated_values_and_grads(k, s, p, op):
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(2, 5, 6, 3), jnp.float32)
  w = jnp.asarray(rng.randn(k, k, 3, 4), jnp.float32)
  lo, hi = k - 1 - p, k - 1 - p + op
  ref = _dilated(x, w, s, lo, hi)
  out = layers.subpixel_conv_transpose(x, w, s, lo, hi)
  assert out.shape == ref.shape
  np.testing.assert_allclose(out, ref, atol=1e-5)
  gr = jax.grad(lambda x, w: jnp.sum(jnp.sin(_dilated(x, w, s, lo, hi))),
                argnums=(0, 1))(x, w)
  go = jax.grad(lambda x, w: jnp.sum(jnp.sin(
      layers.subpixel_conv_transpose(x, w, s, lo, hi))), argnums=(0, 1))(x, w)
  for a, b in zip(gr, go):
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize('cout', [4, 64])   # [N, Cin] x [Cin, k*k*Cout]; per tap
@pytest.mark.parametrize('k,s,p,op,side', [
    (4, 2, 1, 0, (5, 6)), (3, 2, 1, 1, (5, 6)), (4, 4, 0, 0, (3, 2)),
    (2, 2, 0, 0, (5, 6)), (3, 1, 1, 0, (4, 4)), (4, 2, 1, 0, (1, 1))])
def test_matmul_form_matches_dilated_values_and_grads(cout, k, s, p, op,
                                                      side):
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(2, *side, 3), jnp.float32)
  w = jnp.asarray(rng.randn(k, k, 3, cout), jnp.float32)
  lo, hi = k - 1 - p, k - 1 - p + op
  form = layers.matmul_conv_transpose
  np.testing.assert_allclose(form(x, w, s, lo, hi), _dilated(x, w, s, lo, hi),
                             atol=1e-5)
  gr = jax.grad(lambda x, w: jnp.sum(jnp.sin(_dilated(x, w, s, lo, hi))),
                argnums=(0, 1))(x, w)
  go = jax.grad(lambda x, w: jnp.sum(jnp.sin(form(x, w, s, lo, hi))),
                argnums=(0, 1))(x, w)
  for a, b in zip(gr, go):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_conv_transpose_module_forms_agree_and_default_to_matmul_on_cpu():
  x = jax.random.normal(jax.random.key(1), (2, 3, 3, 5))
  m = layers.conv_transpose(6, 4, 2, 1)
  v = m.init(jax.random.key(0), x)
  v = jax.tree.map(lambda a: a + 0.1, v)   # a non-zero bias
  assert layers.transposed_conv_form() == 'matmul'
  ref = m.apply(v, x)
  for form in ('subpixel', 'dilated', 'matmul'):
    with layers.transposed_convs(form):
      assert layers.transposed_conv_form() == form
      np.testing.assert_allclose(m.apply(v, x), ref, atol=1e-5)
  with pytest.raises(ValueError, match='transposed conv form'):
    with layers.transposed_convs('fft'):
      pass


def test_module_params_match_flax_conv_transpose():
  x = jnp.ones((1, 4, 4, 3))
  ours = layers.conv_transpose(5, 4, 2, 1).init(jax.random.key(0), x)
  flax_ct = jax.eval_shape(
      lambda: __import__('flax').linen.ConvTranspose(5, (4, 4), (2, 2)).init(
          jax.random.key(0), x))
  assert (jax.tree.map(jnp.shape, ours) ==
          jax.tree.map(lambda a: a.shape, flax_ct))


@pytest.mark.parametrize('k', [1, 3, 7])
def test_depthwise_matches_grouped_conv_params_values_and_grads(k):
  import flax.linen as nn
  x = jax.random.normal(jax.random.key(1), (2, 9, 10, 6))
  ours = layers.DepthwiseConv(k)
  ref = nn.Conv(6, (k, k), padding='VALID', feature_group_count=6,
                kernel_init=layers.CONV_INIT)
  v = ours.init(jax.random.key(0), x)
  v_ref = ref.init(jax.random.key(0), x)
  # Same names, shapes and initial values: checkpoints carry over.
  jax.tree.map(np.testing.assert_array_equal, v, v_ref)
  v = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(
      jax.random.key(2), a.shape), v)
  np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), atol=1e-5)
  with layers.dilated_transposed_convs():  # the grouped-conv formulation
    np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), atol=1e-6)
  g = jax.grad(lambda v, x: jnp.sum(jnp.sin(ours.apply(v, x))),
               argnums=(0, 1))(v, x)
  g_ref = jax.grad(lambda v, x: jnp.sum(jnp.sin(ref.apply(v, x))),
                   argnums=(0, 1))(v, x)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_depthwise_rejects_inputs_smaller_than_the_kernel():
  with pytest.raises(ValueError, match='smaller than the 3x3 kernel'):
    layers.DepthwiseConv(3).init(jax.random.key(0), jnp.ones((1, 2, 5, 4)))


def _grads(fn, v, x):
  """d/d(variables, x) of sum(sin(fn(v, x))), a non-trivial cotangent."""
  return jax.grad(lambda v, x: jnp.sum(jnp.sin(fn(v, x))), argnums=(0, 1))(
      v, x)


def _assert_close(a, b, tol=1e-5):
  """|a - b| <= tol * (1 + max|b|), leafwise."""
  for u, w in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    scale = 1.0 + float(jnp.max(jnp.abs(w)))
    np.testing.assert_allclose(u, w, rtol=0, atol=tol * scale)


@pytest.mark.parametrize('k,pad', [(3, 1), (7, 3), (3, 0), (5, 0)])
def test_conv_valid_equals_reflect_pad_then_valid_conv(k, pad):
  """Padded conv + crop == (reflect pad ->) VALID conv: params, values, grads."""
  import flax.linen as nn

  class Fast(nn.Module):
    @nn.compact
    def __call__(self, x):
      return layers.conv_valid(layers.reflect_pad(x, pad), 4, k, name='c')

  class Plain(nn.Module):
    @nn.compact
    def __call__(self, x):
      y = layers.reflect_pad(x, pad)
      return nn.Conv(4, (k, k), padding='VALID', kernel_init=layers.CONV_INIT,
                     name='c')(y)

  x = jax.random.normal(jax.random.key(1), (2, 9, 11, 5))
  v = Fast().init(jax.random.key(0), x)
  # Same names, shapes and initial values as the plain nn.Conv.
  jax.tree.map(np.testing.assert_array_equal, v,
               Plain().init(jax.random.key(0), x))
  v = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(
      jax.random.key(2), a.shape), v)
  out, ref = Fast().apply(v, x), Plain().apply(v, x)
  assert out.shape == ref.shape == (2, 9 + 2 * pad - k + 1,
                                    11 + 2 * pad - k + 1, 4)
  _assert_close(out, ref)
  _assert_close(_grads(Fast().apply, v, x), _grads(Plain().apply, v, x))
  # The accounting/export formulation is the plain conv itself.
  with layers.dilated_transposed_convs():
    jaxpr = jax.make_jaxpr(Fast().apply)(v, x)
  conv = [e for e in jaxpr.eqns if e.primitive.name == 'conv_general_dilated']
  assert len(conv) == 1
  assert all(p == (0, 0) for p in conv[0].params['padding'])


@pytest.mark.parametrize('pad', [1, 3])
def test_reflect_pad_equals_numpy_reflect_values_and_grads(pad):
  x = jax.random.normal(jax.random.key(3), (2, 5, 7, 3))
  want = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)),
                mode='reflect')
  np.testing.assert_array_equal(layers.reflect_pad(x, pad), want)

  def plain(x):
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)),
                   mode='reflect')

  g = jax.grad(lambda x: jnp.sum(jnp.sin(layers.reflect_pad(x, pad)) * 1.7))
  g_ref = jax.grad(lambda x: jnp.sum(jnp.sin(plain(x)) * 1.7))
  np.testing.assert_allclose(g(x), g_ref(x), atol=1e-6)


@pytest.mark.parametrize('min_macs', [0, 1 << 62])   # tap dW or XLA's dW
@pytest.mark.parametrize('k,s,p', [(3, 1, 1), (4, 2, 1), (1, 1, 0), (3, 1, 0),
                                   (4, 1, (1, 2))])
def test_tap_grad_conv_equals_xla_conv_values_and_grads(k, s, p, min_macs,
                                                        monkeypatch):
  # Stride 1: the input gradient is the flipped-kernel conv in both cases.
  monkeypatch.setattr(layers, 'TAP_GRAD_MIN_MACS', min_macs)
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 3))
  w = jax.random.normal(jax.random.key(1), (k, k, 3, 5))
  pad = ((p, p), (p, p)) if isinstance(p, int) else (p, p)
  dn = ('NHWC', 'HWIO', 'NHWC')

  def loss(conv):
    return lambda x, w: jnp.sum(jnp.sin(conv(
        x, w, (s, s), pad, dimension_numbers=dn)))

  _assert_close(layers.tap_grad_conv(x, w, (s, s), pad, dimension_numbers=dn),
                jax.lax.conv_general_dilated(x, w, (s, s), pad,
                                             dimension_numbers=dn))
  g = jax.grad(loss(layers.tap_grad_conv), argnums=(0, 1))(x, w)
  g_ref = jax.grad(loss(jax.lax.conv_general_dilated), argnums=(0, 1))(x, w)
  _assert_close(g, g_ref)
  # Through nn.Conv (flax passes its own dimension numbers): same grads.
  import flax.linen as nn
  if not isinstance(p, int):
    return
  m = layers.conv(5, k, s, p)
  v = m.init(jax.random.key(2), x)
  plain = nn.Conv(5, (k, k), (s, s), padding=pad)
  _assert_close(
      jax.grad(lambda v: jnp.sum(jnp.sin(m.apply(v, x))))(v),
      jax.grad(lambda v: jnp.sum(jnp.sin(plain.apply(v, x))))(v))


def test_row_split_conv_equals_plain_conv_values_and_grads():
  x = jax.random.normal(jax.random.key(0), (2, 9, 10, 16))
  w = 0.1 * jax.random.normal(jax.random.key(1), (7, 7, 16, 3))
  _assert_close(layers.row_split_conv(x, w), layers._plain_same_conv(x, w))
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  _assert_close(jax.grad(loss(layers.row_split_conv), argnums=(0, 1))(x, w),
                jax.grad(loss(layers._plain_same_conv), argnums=(0, 1))(x, w))
  # conv_valid (the ResNet heads) takes it for a 16 -> 3 7x7 conv.
  import flax.linen as nn

  class Head(nn.Module):
    @nn.compact
    def __call__(self, x):
      return layers.conv_valid(x, 3, 7, name='c')

  v = Head().init(jax.random.key(2), x)
  jaxpr = jax.make_jaxpr(Head().apply)(v, x)
  assert any('custom_vjp' in e.primitive.name for e in jaxpr.eqns)
  ref = jax.lax.conv_general_dilated(
      x, v['params']['c']['kernel'], (1, 1), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + v['params']['c']['bias']
  _assert_close(Head().apply(v, x), ref)

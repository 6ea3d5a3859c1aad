"""The sub-pixel transposed conv equals the lhs-dilated formulation."""

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


def test_module_params_match_flax_conv_transpose():
  x = jnp.ones((1, 4, 4, 3))
  ours = layers.conv_transpose(5, 4, 2, 1).init(jax.random.key(0), x)
  flax_ct = jax.eval_shape(
      lambda: __import__('flax').linen.ConvTranspose(5, (4, 4), (2, 2)).init(
          jax.random.key(0), x))
  assert (jax.tree.map(jnp.shape, ours) ==
          jax.tree.map(lambda a: a.shape, flax_ct))

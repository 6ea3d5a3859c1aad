"""gcjax.precision: bfloat16 compute with float32 state, and a bf16 run."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from smoke_runs import config, group

from gcjax import precision, state
from gcjax.models import unet


def _unet_step(dtype):
  """(loss, grads, new batch stats, jaxpr text) of one U-Net train pass."""
  m = unet.UNetGenerator(ngf=4, num_downs=3, dropout=0.0)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)),
                  jnp.float32)
  v = m.init(jax.random.key(0), x)

  def loss(params):
    (y, feats), bs = state.apply_net(m, params, v['batch_stats'], x,
                                     train=True)
    return jnp.mean(jnp.square(y - x)), (y, feats, bs)

  def run(params):
    return jax.value_and_grad(loss, has_aux=True)(params)

  fn = precision.traced_in(lambda p: run(p), dtype)
  (lv, (y, feats, bs)), g = jax.jit(fn)(v['params'])
  return lv, y, feats, g, bs, str(jax.make_jaxpr(fn)(v['params']))


def test_bf16_compute_keeps_float32_state_and_tracks_float32():
  l32, y32, _, g32, bs32, _ = _unet_step('float32')
  l16, y16, f16, g16, bs16, jaxpr = _unet_step('bfloat16')
  # Convs run in bf16; outputs, features, loss, grads and stats are f32.
  assert 'bf16[' in jaxpr and 'conv_general_dilated' in jaxpr
  for a in jax.tree.leaves((l16, y16, f16, g16, bs16)):
    assert a.dtype == jnp.float32
  np.testing.assert_allclose(y16, y32, atol=0.05)
  np.testing.assert_allclose(l16, l32, rtol=0.05)
  # Batch statistics: float32 averages of nearly the same numbers.
  for a, b in zip(jax.tree.leaves(bs16), jax.tree.leaves(bs32)):
    np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02)
  cos = [float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)
                                 + 1e-12))
         for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32))]
  assert min(cos) > 0.95, cos


def test_float32_is_the_plain_program():
  *_, jaxpr = _unet_step('float32')
  assert 'bf16' not in jaxpr


def test_norms_see_float32_inputs():
  seen = []

  class Norm(nn.LayerNorm):
    def __call__(self, x, *args, **kwargs):
      seen.append(('norm_in', x.dtype))
      return super().__call__(x, *args, **kwargs)

  class Probe(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.Dense(3)(x)
      seen.append(('dense_out', h.dtype))
      h = Norm()(h)
      seen.append(('norm_out', h.dtype))
      return h

  m = Probe()
  x = jnp.ones((2, 4))
  v = m.init(jax.random.key(0), x)
  with precision.compute_dtype('bfloat16'):
    out = precision.apply(m, v, x)
  assert out.dtype == jnp.float32
  assert seen[-3:] == [('dense_out', jnp.bfloat16), ('norm_in', jnp.float32),
                       ('norm_out', jnp.bfloat16)]


def test_unknown_dtype_raises():
  with pytest.raises(ValueError, match='compute_dtype'):
    precision.check('float16')


@group('pix2pix_gan:smoke')
def test_bf16_smoke_run_losses_near_float32(smoke_run, tmp_path):
  from gcjax import train
  _, want = smoke_run('pix2pix_gan:smoke')
  got = train.run(config('pix2pix_gan:smoke', compute_dtype='bfloat16'),
                  str(tmp_path))
  w, g = want['_run']['last_losses'], got['_run']['last_losses']
  assert got['_run']['steps'] == want['_run']['steps']
  assert g['g/loss'] != w['g/loss'], 'the bf16 run computed in float32'
  for k in ('g/loss', 'g/l1', 'g/adv', 'd/loss'):
    assert np.isfinite(g[k]), k
    # A loose band: bf16 has 8 mantissa bits; after a few steps the
    # losses must still be the f32 run's to a few percent.
    assert abs(g[k] - w[k]) <= 0.05 * abs(w[k]) + 0.02, (k, g[k], w[k])

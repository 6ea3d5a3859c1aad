"""gcjax.pruning (masks, schedules) and gcjax.materialize (filter-pruned ->
smaller dense networks)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gcjax import errors, materialize, pruning
from gcjax.metrics import cost
from gcjax.models import dcgan, unet


def _params(shapes, seed=0):
  keys = jax.random.split(jax.random.key(seed), len(shapes))
  return {name: {'kernel': jax.random.normal(k, s)}
          for (name, s), k in zip(shapes.items(), keys)}


SHAPES = {'conv0': (3, 3, 2, 8), 'conv1': (3, 3, 8, 8),
          'conv2': (4, 4, 8, 4), 'conv3': (3, 3, 4, 1)}


def test_default_layers_skip_the_first_and_last_conv():
  p = _params(SHAPES)
  assert pruning.conv_layers(p) == ('conv0', 'conv1', 'conv2', 'conv3')
  assert pruning.default_layers(p) == ('conv1', 'conv2')
  with pytest.raises(errors.UserError, match=r"\['convX'\] are not convs"):
    pruning.check_layers(p, ('convX',))


@pytest.mark.parametrize('sparsity', [0.25, 0.5, 0.75, 0.9])
def test_layerwise_magnitude_masks_have_the_exact_sparsity(sparsity):
  p = _params(SHAPES)
  # Ties: a layer of equal magnitudes still loses exactly round(s * n).
  p['conv2']['kernel'] = jnp.ones(SHAPES['conv2'])
  m = pruning.magnitude_masks(p, sparsity, ('conv1', 'conv2'))
  for name in ('conv1', 'conv2'):
    k = m[name]['kernel']
    assert int(jnp.sum(~k)) == round(sparsity * k.size)
    w = jnp.abs(p[name]['kernel'])
    if name == 'conv1':   # the pruned ones are the smallest
      assert float(jnp.max(jnp.where(k, 0, w))) <= float(jnp.min(
          jnp.where(k, w, jnp.inf)))
  assert bool(jnp.all(m['conv0']['kernel'])) and bool(
      jnp.all(m['conv3']['kernel']))


def test_global_magnitude_masks_share_one_threshold():
  p = _params(SHAPES)
  p['conv2']['kernel'] = 10.0 * p['conv2']['kernel']   # big layer survives
  m = pruning.magnitude_masks(p, 0.5, ('conv1', 'conv2'), scope='global')
  n = 8 * 9 * 8 + 16 * 8 * 4
  zeros = {k: int(jnp.sum(~m[k]['kernel'])) for k in ('conv1', 'conv2')}
  assert sum(zeros.values()) == round(0.5 * n)
  assert zeros['conv1'] > 0.5 * 576 > 0.5 * 512 > zeros['conv2']


def test_masks_only_grow_and_traced_sparsity_works():
  p = _params(SHAPES)
  m1 = pruning.magnitude_masks(p, 0.3, ('conv1',))
  p2 = pruning.apply_masks(p, m1)
  # A weight that was pruned but is now large stays pruned.
  p2['conv1']['kernel'] = jnp.where(m1['conv1']['kernel'], p2['conv1'][
      'kernel'], 100.0)
  m2 = jax.jit(lambda s: pruning.magnitude_masks(p2, s, ('conv1',),
                                                 prev=m1))(0.6)
  assert bool(jnp.all(m1['conv1']['kernel'] | ~m2['conv1']['kernel']))
  assert int(jnp.sum(~m2['conv1']['kernel'])) == round(0.6 * 576)


def test_agp_schedule_values_by_hand():
  s = pruning.Schedule('agp', final=0.8, start=10, end=50, every=10)
  # s_t = 0.8 (1 - (1 - p)^3), p = (t - 10) / 40.
  for step, want in [(0, 0.0), (10, 0.0), (20, 0.8 * (1 - 0.75**3)),
                     (30, 0.7), (40, 0.8 * (1 - 0.25**3)), (50, 0.8),
                     (90, 0.8)]:
    assert float(pruning.target(s, step)) == pytest.approx(want, abs=1e-6)
  updates = [t for t in range(0, 70) if pruning.update_now(s, t)]
  assert updates == [10, 20, 30, 40, 50]
  odd = pruning.Schedule('agp', final=0.5, start=0, end=25, every=10)
  assert [t for t in range(40) if pruning.update_now(odd, t)] == [
      0, 10, 20, 25]
  one = pruning.Schedule('oneshot', final=0.5)
  assert float(pruning.target(one, 0)) == 0.5
  assert not any(bool(pruning.update_now(one, t)) for t in range(5))
  with pytest.raises(errors.UserError, match='start < end'):
    pruning.check_schedule(pruning.Schedule('agp', start=5, end=5))


def test_pruned_weights_stay_exactly_zero_after_100_adam_steps():
  p = _params(SHAPES)
  m = pruning.magnitude_masks(p, 0.75, ('conv1', 'conv2'))
  p = pruning.apply_masks(p, m)
  tx = optax.adam(1e-2)
  opt = tx.init(p)
  x = jax.random.normal(jax.random.key(3), (2, 9, 9, 2))

  def loss(params):
    h = x
    for name in ('conv0', 'conv1', 'conv2', 'conv3'):
      h = jnp.tanh(jax.lax.conv_general_dilated(
          h, params[name]['kernel'], (1, 1), 'SAME',
          dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
    return jnp.mean(jnp.square(h - 0.3))

  @jax.jit
  def step(p, opt):
    g = jax.grad(loss)(p)
    u, opt = tx.update(g, opt, p)
    return pruning.apply_masks(optax.apply_updates(p, u), m), opt

  p0 = p
  for _ in range(100):
    p, opt = step(p, opt)
  for name in ('conv1', 'conv2'):
    k, mk = p[name]['kernel'], m[name]['kernel']
    assert bool(jnp.all(jnp.where(mk, True, k == 0.0)))
    assert float(jnp.max(jnp.abs(k - p0[name]['kernel']))) > 1e-3  # trained
  rep = pruning.layer_sparsity(m, ('conv1', 'conv2'))
  assert float(rep['conv1']) == pytest.approx(0.75, abs=1 / 576)


# -- filter pruning and materialization ---------------------------------------

def _init(module, x, seed=0, noisy_stats=True):
  v = module.init({'params': jax.random.key(seed),
                   'dropout': jax.random.key(1)}, x)
  v = jax.tree.map(lambda a: a, v)
  # Random norm params and running statistics: eval mode must drop them.
  k = jax.random.key(seed + 7)
  def jiggle(path, a):
    nonlocal k
    k, sub = jax.random.split(k)
    name = '/'.join(str(getattr(q, 'key', q)) for q in path)
    if a.ndim == 1 and noisy_stats:
      r = jax.random.uniform(sub, a.shape, minval=0.5, maxval=1.5)
      return r if name.endswith('var') or name.endswith('scale') else (
          r - 1.0)
    return a * 30.0   # N(0, 0.6) kernels: the outputs are not all ~0
  return jax.tree_util.tree_map_with_path(jiggle, v)


def _masked_and_small(module, v, x, sparsity, layers=None):
  grps = materialize.groups(module, v)
  layers = layers or pruning.default_layers(v['params'])
  m = pruning.filter_masks(v['params'], sparsity, grps, layers)
  masked = {**v, 'params': pruning.apply_masks(v['params'], m)}
  small, sv = materialize.materialize(module, masked, m)
  y_masked = module.apply(masked, x, train=False)[0]
  y_small = small.apply(sv, x, train=False)[0]
  return m, small, sv, y_masked, y_small


@pytest.mark.parametrize('res', [32, 28])
def test_filter_pruned_dcgan_materializes_to_same_outputs(res):
  module = dcgan.DCGANGenerator(d=8, nz=16, out_ch=1, resolution=res)
  z = jax.random.normal(jax.random.key(2), (4, 16))
  v = _init(module, z)
  m, small, sv, y_m, y_s = _masked_and_small(module, v, z, 0.5)
  np.testing.assert_allclose(y_s, y_m, atol=1e-5)
  # The dense net differs (the channels mattered) and the small one is real.
  assert float(jnp.max(jnp.abs(module.apply(v, z)[0] - y_m))) > 1e-2
  _, widths = dcgan.generator_widths(8, res)
  layers = pruning.default_layers(v['params'])
  assert small.widths == tuple(c // 2 if f'conv{i}' in layers else c
                               for i, c in enumerate(widths))
  if res == 32:
    # conv1 (32->16) and conv2 (16->8) halve their filters: params drop by
    # conv1 out + conv2 in/out + conv3 in, plus 2 norm params a channel.
    drop = (16 * 32 * 8 + (16 * 16 * 8 - 16 * 8 * 4) + 16 * 4 * 1
            + 2 * (8 + 4))
    assert (cost.count_params(v['params']) - cost.count_params(sv['params'])
            == drop)
    macs = {k: cost.count_macs(lambda vv, zz, mod=mod: mod.apply(vv, zz)[0],
                               vv, z[:1])['true']
            for k, mod, vv in (('big', module, v), ('small', small, sv))}
    # True MACs of a 4x4 s2 transposed conv: input elements x 16 x C_out;
    # conv0 (stride 1 on the 1x1 latent) counts its 4x4x32 outputs x 16
    # taps x nz.
    c0 = 16 * 32 * 16 * 16
    assert macs['big'] == c0 + 16 * 32 * 16 * 16 + 64 * 16 * 16 * 8 + (
        256 * 8 * 16)
    assert macs['small'] == c0 + 16 * 32 * 16 * 8 + 64 * 8 * 16 * 4 + (
        256 * 4 * 16)


@pytest.mark.parametrize('norm', ['batch', 'instance'])
def test_filter_pruned_unet_with_skips_materializes_to_same_outputs(norm):
  module = unet.UNetGenerator(ngf=8, out_ch=2, norm=norm, dropout=0.5)
  x = jax.random.normal(jax.random.key(4), (2, 16, 16, 3))
  v = _init(module, x)
  m, small, sv, y_m, y_s = _masked_and_small(module, v, x, 0.5)
  np.testing.assert_allclose(y_s, y_m, atol=1e-5)
  assert float(jnp.max(jnp.abs(module.apply(v, x)[0] - y_m))) > 1e-3
  # 16x16 -> 4 levels: widths 8, 16, 32, 64; levels 1-3 and decoders 1-3
  # (everything but down0 and up0) keep half their filters.
  assert small.widths == (8, 8, 16, 32)
  assert small.up_widths == (4, 8, 16)
  big_p, small_p = (cost.count_params(t['params']) for t in (v, sv))
  assert small_p < 0.4 * big_p
  # Exact parameter count of the materialized U-Net's kernels: each
  # kernel keeps (kept inputs) x (kept outputs) x 16 weights.
  ins = {'down0': 3, 'down1': 8, 'down2': 8, 'down3': 16,
         'up3': 32, 'up2': 16 + 16, 'up1': 8 + 8, 'up0': 8 + 4}
  outs = {'down0': 8, 'down1': 8, 'down2': 16, 'down3': 32,
          'up3': 16, 'up2': 8, 'up1': 4, 'up0': 2}
  for k in ins:
    assert sv['params'][f'{k}_conv']['kernel'].shape == (4, 4, ins[k],
                                                         outs[k])
  # Training mode (batch statistics) agrees too; at 16x16 (4 levels) no
  # level has dropout, whose draws would depend on the channel count.
  masked = {**v, 'params': pruning.apply_masks(v['params'], m)}
  rng = {'dropout': jax.random.key(9)}
  mut = ['batch_stats'] if norm == 'batch' else []
  y_m = module.apply(masked, x, train=True, rngs=rng, mutable=mut)[0][0]
  y_s = small.apply(sv, x, train=True, rngs=rng, mutable=mut)[0][0]
  np.testing.assert_allclose(y_s, y_m, atol=1e-5)


def test_filter_masks_prune_whole_channels_and_their_readers():
  module = dcgan.DCGANGenerator(d=4, nz=8, out_ch=1, resolution=32)
  v = _init(module, jnp.zeros((1, 8)))
  grps = materialize.groups(module, v)
  m = pruning.filter_masks(v['params'], 0.75, grps, ('conv1',))
  keep = np.asarray(pruning.kept_channels(m, grps[1]))
  assert keep.sum() == 2                 # 8 filters, 75% pruned
  # The kept ones have the largest L1 norms.
  l1 = np.abs(np.asarray(v['params']['conv1']['kernel'])).sum((0, 1, 2))
  assert set(np.flatnonzero(keep)) == set(np.argsort(l1)[-2:])
  np.testing.assert_array_equal(np.asarray(m['norm1']['scale']), keep)
  np.testing.assert_array_equal(np.asarray(m['norm1']['bias']), keep)
  np.testing.assert_array_equal(
      np.asarray(m['conv2']['kernel']).any(axis=(0, 1, 3)), keep)
  assert bool(jnp.all(m['conv0']['kernel']))
  with pytest.raises(errors.UserError, match='no prunable output channels'):
    pruning.filter_masks(v['params'], 0.5, grps, ('conv3',))


def test_fine_grained_masks_refuse_to_materialize():
  module = dcgan.DCGANGenerator(d=4, nz=8, out_ch=1, resolution=32)
  v = _init(module, jnp.zeros((1, 8)))
  m = pruning.magnitude_masks(v['params'], 0.5,
                              pruning.default_layers(v['params']))
  with pytest.raises(errors.UserError, match='prunes single weights, not '
                                             'whole filters'):
    materialize.materialize(module, v, m)


def test_fine_grained_sparsity_counts_nonzero_weight_macs():
  module = dcgan.DCGANGenerator(d=8, nz=16, out_ch=1, resolution=32)
  z = jnp.ones((1, 16))
  v = _init(module, z)
  fwd = lambda vv, zz: module.apply(vv, zz)[0]  # noqa: E731
  dense = cost.count_macs(fwd, v, z)['true']
  assert cost.count_nonzero_macs(fwd, v, z) == dense
  m = pruning.magnitude_masks(v['params'], 0.5,
                              pruning.default_layers(v['params']))
  sparse = {**v, 'params': pruning.apply_masks(v['params'], m)}
  # conv0 and conv3 stay dense; conv1 and conv2 (131072 true MACs each)
  # halve.
  assert cost.count_nonzero_macs(fwd, sparse, z) == (
      dense - (131072 + 131072) // 2)

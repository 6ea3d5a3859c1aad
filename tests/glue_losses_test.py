"""Assembled student losses against hand sums: the MI terms, OMGD's total.

The parts (SSIM, Gram, InfoNCE, the energy net) are checked elsewhere;
these tests check how they are put together: which half is positive, which
queue the negatives come from, which weight multiplies which term and that
every teacher is summed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import pix2pix_omgd
from gcjax.models import energy, vgg
from gcjax.objectives import distill
from gcjax.objectives import mi as mi_lib
from gcjax.recipes import distill as distill_lib
from gcjax.state import NetState, create_net_state, variables_of

SHAPE = (8, 8, 1)
B = 4


def _images(seed, b=B, shape=SHAPE):
  k1, k2 = jax.random.split(jax.random.key(seed))
  t = jax.random.uniform(k1, (b, *shape), minval=-1, maxval=1)
  s = jnp.tanh(t + 0.5 * jax.random.normal(k2, t.shape))
  return t, s


def test_vem_student_term_value_and_sign():
  """lambda * [mean E(t+, s) - mean E(t~, s)] with E evaluated by hand."""
  # The compact energy net, so E can be rebuilt by hand below.
  mi = mi_lib.make_mi('vem', t_shape=SHAPE, s_shape=SHAPE, lambda_mi=0.3,
                      ebm_arch='compact', ebm_ch=4, ebm_blocks=1, ebm_pool=2,
                      n_steps=2, step_size=1.0, noise_std=0.1)
  state = mi.init(jax.random.key(0))
  t_pos, s = _images(1)
  t_neg = jax.random.uniform(jax.random.key(2), t_pos.shape, minval=-1)
  term, m = jax.jit(mi.student_loss)(state, t_pos, s, {'t_neg': t_neg})
  net = energy.EnergyNet(ch=4, n_blocks=1, pool=2, spectral_norm=True)
  v = variables_of(state)
  e_pos = np.asarray(net.apply(v, t_pos, s, train=False)[0], np.float64)
  e_neg = np.asarray(net.apply(v, t_neg, s, train=False)[0], np.float64)
  assert e_pos.shape == (B,)
  want = 0.3 * (e_pos.mean() - e_neg.mean())
  assert abs(want) > 1e-4          # a sign flip must be visible
  np.testing.assert_allclose(float(term), want, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(float(m['mi/student_term']), want, rtol=1e-4,
                             atol=1e-7)


def test_crd_student_term_is_cross_entropy_of_matching_pair():
  """Negatives: the other in-batch teacher embeddings plus the queue as it
  was *before* this batch was enqueued (the update's aux)."""
  kw = dict(crd_dim=8, crd_hidden=4, crd_queue=6, crd_temperature=0.07)
  mi = mi_lib.make_mi('crd', t_shape=SHAPE, s_shape=SHAPE, lambda_mi=0.5,
                      **kw)
  state = mi.init(jax.random.key(0))
  t_pos, s = _images(3)
  new, aux, _ = jax.jit(mi.update)(state, t_pos, s, jax.random.key(1))
  # The update enqueued this batch's embeddings: the queues differ.
  assert not np.allclose(new['queue'], aux['queue'])
  term, _ = jax.jit(mi.student_loss)(new, t_pos, s, aux)
  heads = mi_lib.CRDHeads(dim=8, hidden=4)
  (z_t, z_s), _ = heads.apply({'params': new['net'].params}, t_pos, s)
  z_t, z_s = np.asarray(z_t, np.float64), np.asarray(z_s, np.float64)
  cands = np.concatenate([z_t, np.asarray(aux['queue'], np.float64)])
  logits = z_s @ cands.T / 0.07
  ce = [np.log(np.sum(np.exp(row - row.max()))) + row.max() - row[i]
        for i, row in enumerate(logits)]
  np.testing.assert_allclose(float(term), 0.5 * np.mean(ce), rtol=1e-4)


def _gram(f):
  b, h, w, c = f.shape
  flat = f.reshape(b, h * w, c)
  return np.einsum('bpi,bpj->bij', flat, flat) / (h * w * c)


def test_omgd_student_loss_as_assembled():
  """Two teachers, VGG on, the paper's weights, feature distillation, VID:
  the reported s/loss equals the hand sum over both teachers."""
  lc = pix2pix_omgd.get_config('paper').loss
  # The paper's weights (OMGD's public code) are what the config carries.
  assert (lc.ssim, lc.style, lc.perceptual, lc.tv, lc.feature) == (
      10.0, 1e4, 10.0, 1e-5, 10.0)
  style_layers = tuple(lc.style_layers)
  w = distill_lib.StudentWeights(
      ssim=lc.ssim, style=lc.style, perceptual=lc.perceptual, tv=lc.tv,
      feature=lc.feature, l1=0.0, feature_layers=('down1',),
      style_layers=style_layers)
  hw, c = 16, 3
  shape = (hw, hw, c)
  t_imgs = [_images(10 + k, shape=shape)[0] for k in range(2)]
  s_img = _images(12, shape=shape)[1]
  s_map = jax.random.normal(jax.random.key(13), (B, 8, 8, 5))
  t_map = jax.random.normal(jax.random.key(14), (B, 8, 8, 6))

  def student_fwd(params, batch_stats, src, key):
    del src, key
    return (params['img'], {'down1': params['map']}), batch_stats

  tx = optax.sgd(0.0)
  student = NetState(params={'img': s_img, 'map': s_map},
                     opt_state=tx.init({'img': s_img, 'map': s_map}))
  adapt_module = distill_lib.Adapters(out_channels=(6,), layers=('down1',))
  adapt = create_net_state(adapt_module, tx, jax.random.key(4), (s_map,))
  mi = mi_lib.make_mi('vid', t_shape=shape, s_shape=shape, lambda_mi=0.2,
                      vid_hidden=4)
  mi_state = mi.init(jax.random.key(5))
  vgg_vars = vgg.VGG16(last=max(style_layers, key=vgg.VGG16_LAYERS.index)
                       ).init(jax.random.key(6), jnp.zeros((1, *shape)))
  frozen = {'vgg': vgg_vars}
  t_pos = t_imgs[0]

  _, _, new_mi, m = jax.jit(lambda *a: distill_lib.student_update(
      *a, student_fwd=student_fwd, adapt_module=adapt_module,
      tx_student=tx, tx_adapt=tx, w=w, mi=mi, tv_reduction='sum'))(
          student, adapt, mi_state, s_img, t_imgs, {'down1': t_map}, t_pos,
          jax.random.key(7), frozen)

  f64 = lambda x: np.asarray(x, np.float64)
  layers = tuple(dict.fromkeys((*style_layers, 'relu2_2')))
  feats = lambda x: {k: f64(v) for k, v in
                     vgg.vgg16_features(vgg_vars, x, layers).items()}
  s_f = feats(s_img)
  total = 0.0
  for t in t_imgs:
    t_f = feats(t)
    ssim = float(distill.ssim_loss(s_img, t))
    style = sum(np.mean(np.abs(_gram(s_f[n]) - _gram(t_f[n])))
                for n in style_layers)
    perc = np.mean(np.abs(s_f['relu2_2'] - t_f['relu2_2']))
    total += 10 * ssim + 1e4 * style + 10 * perc
    assert 1e4 * style > 1e-3 and 10 * perc > 1e-3   # both terms matter
  s = f64(s_img)
  tv = (np.abs(s[:, 1:] - s[:, :-1]).sum()
        + np.abs(s[:, :, 1:] - s[:, :, :-1]).sum())
  adapted = adapt_module.apply(variables_of(adapt), (s_map,), train=True,
                               mutable=['batch_stats'])[0][0]
  feat = np.mean(np.square(f64(adapted).mean((1, 2))
                           - f64(t_map).mean((1, 2))))
  (mu, var), _ = mi_lib.VID(out_ch=c, hidden=4).apply(
      {'params': new_mi.params}, s_img)
  nll = np.mean(0.5 * np.log(2 * np.pi * f64(var))
                + (f64(t_pos) - f64(mu)) ** 2 / (2 * f64(var)))
  total += 1e-5 * tv + 10 * feat + 0.2 * nll
  np.testing.assert_allclose(float(m['s/loss']), total, rtol=2e-5)
  # The per-teacher parts are reported under their own names.
  assert {'s/ssim0', 's/ssim1', 's/style0', 's/style1', 's/perceptual0',
          's/perceptual1'} <= set(m)
  np.testing.assert_allclose(float(m['s/tv']), tv, rtol=1e-5)


"""models.stylegan and gan flavour stylegan (DLSGAN): style mixing,
demodulation, R1, the assembled D/G losses and the DLS update order, and
the smoke configs end to end with their exports."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcjax import teachers, train
from gcjax.methods.gan import stylegan as method_lib
from gcjax.models import stylegan
from gcjax.objectives import adversarial, dls


def _config(name='stylegan_dls', **dls_overrides):
  c = importlib.import_module(f'configs.{name}').get_config('smoke')
  c.dls.update(dls_overrides)
  c.lock()
  return c


@pytest.fixture(scope='module')
def gen_and_vars():
  gen = stylegan.StyleGenerator(z_dim=8, w_dim=8, map_layers=2,
                                resolution=16, out_ch=1, ch_base=64,
                                ch_max=4)
  v = gen.init(jax.random.key(0), jnp.zeros((1, 8)))
  return gen, v


def test_mix_styles_takes_w1_below_the_cutoff_and_w2_from_it():
  w1, w2 = jnp.ones((3, 2)), -jnp.ones((3, 2))
  ws = stylegan.mix_styles(w1, w2, jnp.array([0, 2, 5]), 5)
  assert ws.shape == (3, 5, 2)
  np.testing.assert_array_equal(np.asarray(ws[..., 0]),
                                [[-1, -1, -1, -1, -1],
                                 [1, 1, -1, -1, -1],
                                 [1, 1, 1, 1, 1]])


def test_synthesis_layers_read_their_own_w(gen_and_vars):
  gen, v = gen_and_vars
  assert gen.num_ws == 6          # 16x16: convs 4, 8up, 8, 16up, 16 + rgb.
  w1 = jax.random.normal(jax.random.key(1), (2, 8))
  w2 = jax.random.normal(jax.random.key(2), (2, 8))
  base = jnp.repeat(w1[:, None], gen.num_ws, 1)
  img0, f0 = gen.apply(v, base, method='synthesize')
  # Layer j's w first shows at this resolution (None: only in the image,
  # the last toRGB); the toRGBs share the next conv's w.
  first = [4, 8, 8, 16, 16, None]
  for j, res in enumerate(first):
    img, f = gen.apply(v, base.at[:, j].set(w2), method='synthesize')
    for r in (4, 8, 16):
      diff = float(np.abs(np.asarray(f[f'res{r}'] - f0[f'res{r}'])).max())
      if res is None or r < res:
        assert diff == 0.0, (j, r)
      elif r == res:
        assert diff > 1e-3, (j, r)
    assert float(np.abs(np.asarray(img - img0)).max()) > 1e-4, j
  # Style mixing at cutoff 3 = layers 0-2 from w1, the rest from w2.
  mixed = stylegan.mix_styles(w1, w2, jnp.full((2,), 3), gen.num_ws)
  _, f3 = gen.apply(v, mixed, method='synthesize')
  np.testing.assert_array_equal(f3['res8'], f0['res8'])
  assert np.abs(np.asarray(f3['res16'] - f0['res16'])).max() > 1e-3
  # __call__ broadcasts one w to every layer.
  z = jax.random.normal(jax.random.key(3), (2, 8))
  w = gen.apply(v, z, method='map')
  ws = jnp.repeat(w[:, None], gen.num_ws, 1)
  np.testing.assert_allclose(gen.apply(v, z)[0],
                             gen.apply(v, ws, method='synthesize')[0],
                             rtol=1e-5, atol=1e-6)
  assert img0.shape == (2, 16, 16, 1)


def test_dls_scale_variable_multiplies_z(gen_and_vars):
  gen, v = gen_and_vars
  s = jnp.linspace(0.1, 2.0, 8)
  z = jax.random.normal(jax.random.key(4), (2, 8))
  with_s = gen.apply({**v, 'dls': {'scale': s}}, z)[0]
  np.testing.assert_allclose(with_s, gen.apply(v, z * s)[0], rtol=1e-5,
                             atol=1e-6)


def test_modulated_conv_with_demodulation_keeps_unit_std():
  x = jax.random.normal(jax.random.key(0), (4, 24, 24, 32))
  w = jax.random.normal(jax.random.key(1), (4, 16))
  for demod, want in ((True, 1.0), (False, None)):
    conv = stylegan.ModulatedConv(32, 3, demodulate=demod)
    v = conv.init(jax.random.key(2), x, w)
    y = np.asarray(conv.apply(v, x, w))[:, 1:-1, 1:-1]  # no zero padding
    if want is not None:
      assert y.std(axis=(1, 2)).mean() == pytest.approx(want, abs=0.05)
    else:   # without it the style's magnitude shows (E[style^2] ~ 2)
      assert abs(y.std() - 1.0) > 0.2


@pytest.mark.parametrize('k,demod,up', [(3, True, False), (3, True, True),
                                        (1, False, False)])
def test_modulated_conv_equals_per_sample_weights_values_and_grads(k, demod,
                                                                   up):
  """StyleGAN2's plain form: each example's kernel W * style / sqrt(fan_in),
  divided by its per-output-channel norm, convolved with that example."""
  x = jax.random.normal(jax.random.key(1), (2, 4, 4, 5))
  w = jax.random.normal(jax.random.key(2), (2, 6))
  m = stylegan.ModulatedConv(3, k, demodulate=demod, up=up)
  v = m.init(jax.random.key(0), x, w)
  v = jax.tree.map(lambda a: a + 0.2 * jax.random.normal(
      jax.random.key(3), a.shape), v)

  def plain(v, x, w):
    p = v['params']
    style = w @ p['affine']['kernel'] / np.sqrt(6) + p['affine']['bias']
    kern = p['kernel'] / np.sqrt(k * k * 5)
    if up:
      x = stylegan.upsample2x(x)
    out = []
    for i in range(x.shape[0]):
      wi = kern * style[i][None, None, :, None]
      if demod:
        wi = wi / jnp.sqrt(jnp.sum(jnp.square(wi), axis=(0, 1, 2)) + 1e-8)
      out.append(jax.lax.conv_general_dilated(
          x[i:i + 1], wi, (1, 1), 'SAME',
          dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
    return jnp.concatenate(out)

  np.testing.assert_allclose(m.apply(v, x, w), plain(v, x, w), atol=1e-5)
  loss = lambda f: lambda v, x: jnp.sum(jnp.sin(f(v, x, w)))
  g = jax.grad(loss(m.apply), argnums=(0, 1))(v, x)
  g_ref = jax.grad(loss(plain), argnums=(0, 1))(v, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4),
               g, g_ref)


def test_r1_matches_finite_differences():
  d = stylegan.StyleDiscriminator(resolution=8, z_dim=0, ch_base=16,
                                  ch_max=2)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  v = d.init(jax.random.key(1), x)
  d_fn = lambda y: d.apply(v, y)[0]   # noqa: E731
  got = float(adversarial.r1_penalty(d_fn, x))
  eps = 1e-2
  xn = np.asarray(x, np.float64)
  sq = np.zeros(2)
  for idx in np.ndindex(*xn.shape[1:]):
    for b in range(2):
      e = np.zeros_like(xn)
      e[(b, *idx)] = eps
      hi = float(d_fn(jnp.asarray(xn + e, jnp.float32))[b, 0])
      lo = float(d_fn(jnp.asarray(xn - e, jnp.float32))[b, 0])
      sq[b] += ((hi - lo) / (2 * eps)) ** 2
  assert got == pytest.approx(sq.mean(), rel=2e-2)


@pytest.fixture(scope='module')
def dg_step():
  c = _config()
  batch = {'img': jax.random.uniform(jax.random.key(9), (8, 32, 32, 1),
                                     minval=-1.0, maxval=1.0)}
  method = method_lib.make(c, batch)
  return c, method, batch, jax.jit(method.train_step)


def _skewed(method, c):
  """A fresh state whose ring buffer is not uniform (s != 1)."""
  state = jax.jit(method.init)(jax.random.key(0))
  buf = jnp.linspace(0.2, 3.0, c.generator.z_dim)[None].repeat(
      c.dls.buffer, 0)
  return state.replace(dls=state.dls.replace(buffer=buf))


def test_step_losses_equal_hand_sums_with_the_scale_before_the_update(
    dg_step):
  c, method, batch, step = dg_step
  nets = method_lib.make_nets(c, (32, 32, 1))
  state = _skewed(method, c)
  s = dls.latent_scale(jnp.mean(state.dls.buffer, 0))
  key = jax.random.key(5)
  new, m = step(state, batch, key, None)
  # Rebuild the step's fakes: key = fold_in(key, step) -> 4 keys, z first.
  z_key = jax.random.split(jax.random.fold_in(key, 0), 4)[0]
  z = jax.random.normal(z_key, (8, c.generator.z_dim))
  fake = nets.gen.apply({'params': state.gen.params}, z * s)[0]

  def d_out(params, x):
    return nets.disc.apply({'params': params}, x)

  real_logit = d_out(state.disc.params, batch['img'])[0]
  fake_logit, fake_feats = d_out(state.disc.params, fake)
  l_enc = float(jnp.mean(jnp.square(fake_feats['latent'] - z) * s * s))
  r1 = float(adversarial.r1_penalty(
      lambda x: d_out(state.disc.params, x)[0], batch['img']))
  adv_d = float(jnp.mean(jax.nn.softplus(-real_logit))
                + jnp.mean(jax.nn.softplus(fake_logit)))
  assert float(m['d/enc']) == pytest.approx(l_enc, rel=1e-4)
  assert float(m['d/r1']) == pytest.approx(r1, rel=1e-3)
  assert float(m['d/loss']) == pytest.approx(
      adv_d + 1.0 * l_enc + 10.0 * r1, rel=1e-4)
  # G: against the updated D, encoder loss included (enc_on='dg').
  g_logit, g_feats = d_out(new.disc.params, fake)
  g_enc = float(jnp.mean(jnp.square(g_feats['latent'] - z) * s * s))
  assert float(m['g/loss']) == pytest.approx(
      float(jnp.mean(jax.nn.softplus(-g_logit))) + g_enc, rel=1e-4)
  # The step reports (and used) s from before its buffer update; the buffer
  # took this step's batch mean of z'^2 from the pre-update D.
  assert float(m['dls/entropy']) == pytest.approx(float(dls.entropy(s)),
                                                  rel=1e-5)
  np.testing.assert_allclose(new.dls.buffer[0],
                             dls.second_moment(fake_feats['latent']),
                             rtol=1e-4)
  np.testing.assert_array_equal(new.dls.buffer[1:], state.dls.buffer[1:])
  assert int(new.dls.count) == 1



def _signs_agree(update, grad, lr):
  """A first Adam step with b1 = 0 moves each weight by -lr g / |g|."""
  u, g = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
          for t in (update, grad))
  big = np.abs(g) > 1e-5      # Adam's eps (1e-8) is negligible there
  assert big.mean() > 0.5
  np.testing.assert_allclose(u[big], -lr * np.sign(g[big]), rtol=1e-2)


def test_first_updates_follow_the_gradients_of_the_hand_losses(dg_step):
  """The encoder loss reaches D's latent head and trunk, and (enc_on='dg')
  the generator through its images; the mapping net moves at its own lr."""
  c, method, batch, step = dg_step
  nets = method_lib.make_nets(c, (32, 32, 1))
  state = _skewed(method, c)
  s = dls.latent_scale(jnp.mean(state.dls.buffer, 0))
  key = jax.random.key(5)
  new, _ = step(state, batch, key, None)
  z_key = jax.random.split(jax.random.fold_in(key, 0), 4)[0]
  z = jax.random.normal(z_key, (8, c.generator.z_dim))

  def gen(params):
    return nets.gen.apply({'params': params}, z * s)[0]

  def d_loss(params):
    d_fn = lambda x: nets.disc.apply({'params': params}, x)   # noqa: E731
    real_logit = d_fn(batch['img'])[0]
    fake_logit, feats = d_fn(gen(state.gen.params))
    return (jnp.mean(jax.nn.softplus(-real_logit))
            + jnp.mean(jax.nn.softplus(fake_logit))
            + jnp.mean(jnp.square(feats['latent'] - z) * s * s)
            + 10.0 * adversarial.r1_penalty(lambda x: d_fn(x)[0],
                                            batch['img']))

  def g_loss(params):
    logit, feats = nets.disc.apply({'params': new.disc.params}, gen(params))
    return (jnp.mean(jax.nn.softplus(-logit))
            + jnp.mean(jnp.square(feats['latent'] - z) * s * s))

  def moved(a, b):
    return jax.tree.map(lambda x, y: y - x, a, b)

  g_d = jax.grad(d_loss)(state.disc.params)
  d_upd = moved(state.disc.params, new.disc.params)
  _signs_agree(d_upd['latent'], g_d['latent'], c.optim.d.lr)
  _signs_agree(d_upd, g_d, c.optim.d.lr)
  g_g = jax.grad(g_loss)(state.gen.params)
  g_upd = moved(state.gen.params, new.gen.params)
  _signs_agree({k: v for k, v in g_upd.items() if k != 'mapping'},
               {k: v for k, v in g_g.items() if k != 'mapping'},
               c.optim.g.lr)
  _signs_agree(g_upd['mapping'], g_g['mapping'], c.optim.map.lr)

def test_enc_on_d_only_leaves_it_out_of_the_g_loss_and_nodls_keeps_s_1():
  c = _config(enc_on='d', enabled=False)
  batch = {'img': jnp.zeros((8, 32, 32, 1))}
  method = method_lib.make(c, batch)
  nets = method_lib.make_nets(c, (32, 32, 1))
  state = _skewed(method, c)
  new, m = jax.jit(method.train_step)(state, batch, jax.random.key(5), None)
  z_key = jax.random.split(jax.random.fold_in(jax.random.key(5), 0), 4)[0]
  z = jax.random.normal(z_key, (8, c.generator.z_dim))
  fake = nets.gen.apply({'params': state.gen.params}, z)[0]   # s = 1
  g_logit = nets.disc.apply({'params': new.disc.params}, fake)[0]
  assert float(m['g/loss']) == pytest.approx(
      float(jnp.mean(jax.nn.softplus(-g_logit))), rel=1e-4)
  assert float(m['g/enc']) > 0
  assert float(m['dls/entropy']) == pytest.approx(
      float(dls.entropy(jnp.ones(c.generator.z_dim))), rel=1e-6)
  np.testing.assert_array_equal(new.dls.buffer, state.dls.buffer)


@pytest.mark.parametrize('name', ['stylegan_dls', 'stylegan_nodls'])
def test_smoke_config_end_to_end_and_exports_load(name, tmp_path):
  c = importlib.import_module(f'configs.{name}').get_config('smoke')
  res = train.run(c, str(tmp_path))
  assert {'psnr', 'ssim'} <= set(res['recon'])
  assert {'agree_psnr', 'agree_ssim'} <= set(res['gen_recon'])
  gen, g_vars = teachers.load(f'run:{tmp_path}')
  assert isinstance(gen, stylegan.StyleGenerator)
  disc, d_vars = teachers.load(f'run:{tmp_path}:disc')
  s = np.asarray(g_vars['dls']['scale'])
  assert s.shape == (c.generator.z_dim,)
  np.testing.assert_allclose(np.sum(s * s), c.generator.z_dim, rtol=1e-4)
  if name == 'stylegan_nodls':
    np.testing.assert_array_equal(s, np.ones_like(s))
  z = jax.random.normal(jax.random.key(0), (2, c.generator.z_dim))
  img = gen.apply(g_vars, z)[0]
  np.testing.assert_allclose(
      img, gen.apply({'params': g_vars['params']}, z * s)[0], rtol=1e-5,
      atol=1e-6)
  logits, feats = disc.apply(d_vars, img)
  assert logits.shape == (2, 1)
  assert feats['latent'].shape == (2, c.generator.z_dim)

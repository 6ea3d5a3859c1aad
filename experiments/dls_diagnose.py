"""Why does the DLSGAN miniature's encoder learn nothing? Cheap probes.

For each network size (``--sizes``: ``zdim:w_dim:g_ch_max:d_ch_max``) of
``configs/stylegan_dls.py``'s default preset, at initialization:

* ``ridge``: how much of z a *linear* read-out recovers from the random
  generator's w (the mapping net's output) and from its images G(z), as
  held-out L_enc = mean (z_hat - z)^2 (1: nothing; 0: all), ridge fit on
  ``--n_fit`` samples, scored on 1024 others;
* ``enc_only``: the discriminator trained on L_enc alone (no adversarial
  term, no R1) against the fixed random generator, Adam (0, 0.99) lr 1e-3,
  batch 16, ``--steps`` steps: L_enc at steps 0, 100, ...;
* ``grads``: at initialization, the global gradient norm that each term of
  the discriminator loss (adversarial, 10 R1, L_enc) sends into the latent
  head and into the trunk, on one real Fashion batch.

Writes markdown to ``--out``. Run from the repository root:
  python -m experiments.dls_diagnose --steps=300
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from gcjax import cli
from gcjax import data as data_lib
from gcjax.data import pipeline
from gcjax.methods.gan import stylegan as flavour
from gcjax.objectives import adversarial
from gcjax.objectives import dls as dls_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_list('sizes', ['512:128:32:32', '512:128:32:128',
                            '64:128:32:32', '64:128:64:64'],
                  'Network sizes zdim:w_dim:g_ch_max:d_ch_max.')
flags.DEFINE_integer('steps', 300, 'Encoder-only training steps.')
flags.DEFINE_integer('n_fit', 4096, 'Samples of the ridge fit.')
flags.DEFINE_string('out', os.path.join(ROOT, 'experiments', 'results',
                                        'dls_diagnose.md'),
                    'Markdown output.')


def _config(size: str):
  from configs import stylegan_dls
  zd, wd, gch, dch = (int(v) for v in size.split(':'))
  c = stylegan_dls.get_config('default')
  c.generator.update(z_dim=zd, w_dim=wd, ch_max=gch)
  c.disc.update(ch_max=dch)
  return c


def ridge_loss(x_fit, z_fit, x_test, z_test, lam=1e-3) -> float:
  """Held-out mean (z_hat - z)^2 of a ridge read-out x -> z."""
  x_fit, x_test = (np.asarray(a, np.float64).reshape(len(a), -1)
                   for a in (x_fit, x_test))
  mu = x_fit.mean(0)
  a, b = x_fit - mu, x_test - mu
  sd = a.std(0) + 1e-8
  a, b = a / sd, b / sd
  w = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]),
                      a.T @ z_fit)
  return float(np.mean(np.square(b @ w - z_test)))


def probe(size: str, real: np.ndarray, key) -> dict:
  c = _config(size)
  nets = flavour.make_nets(c, (32, 32, 1))
  zd = nets.gen.z_dim
  g_key, d_key, z_key, t_key = jax.random.split(key, 4)
  g_params = nets.gen.init(g_key, jnp.zeros((1, zd)))['params']
  d_params = nets.disc.init(d_key, jnp.zeros((1, 32, 32, 1)))['params']
  n_g = sum(x.size for x in jax.tree.leaves(g_params))
  n_d = sum(x.size for x in jax.tree.leaves(d_params))

  gen = jax.jit(lambda z: nets.gen.apply({'params': g_params}, z)[0])
  wmap = jax.jit(lambda z: nets.gen.apply({'params': g_params}, z,
                                          method='map'))
  n = FLAGS.n_fit + 1024
  z = np.asarray(jax.random.normal(z_key, (n, zd)))
  imgs = np.concatenate([np.asarray(gen(z[i:i + 256]))
                         for i in range(0, n, 256)])
  ws = np.asarray(wmap(z))
  f = FLAGS.n_fit
  out = {'size': size, 'G params': n_g, 'D params': n_d,
         'img std over z': float(imgs.std(0).mean()),
         'ridge w->z': ridge_loss(ws[:f], z[:f], ws[f:], z[f:]),
         'ridge G(z)->z': ridge_loss(imgs[:f], z[:f], imgs[f:], z[f:])}

  # Gradient norms of each D loss term at init, latent head vs trunk.
  s = jnp.ones((zd,))
  zb = jnp.asarray(z[:16])
  fake = jnp.asarray(imgs[:16])
  xr = jnp.asarray(real[:16])

  def d_apply(p, x):
    return nets.disc.apply({'params': p}, x)

  def terms(p):
    lr, _ = d_apply(p, xr)
    lf, ff = d_apply(p, fake)
    return {'adv': adversarial.gan_d_loss(lr, lf, 'vanilla'),
            'r1x10': 10 * adversarial.r1_penalty(lambda x: d_apply(p, x)[0],
                                                 xr),
            'enc': dls_lib.encoder_loss(ff['latent'], zb, s)}

  names = ('adv', 'r1x10', 'enc')
  for name in names:
    g = jax.grad(lambda p, name=name: terms(p)[name])(d_params)
    head = optax.tree.norm(g['latent'])
    trunk = optax.tree.norm({k: v for k, v in g.items()
                             if k not in ('latent', 'logit')})
    out[f'|grad {name}| head/trunk'] = f'{head:.3g}/{trunk:.3g}'

  # Encoder-only training against the fixed random generator.
  tx = optax.adam(1e-3, b1=0.0, b2=0.99)

  @jax.jit
  def step(p, opt, k):
    zz = jax.random.normal(k, (16, zd))
    x = nets.gen.apply({'params': g_params}, zz)[0]

    def loss(p):
      return dls_lib.encoder_loss(d_apply(p, x)[1]['latent'], zz, s)
    val, g = jax.value_and_grad(loss)(p)
    upd, opt = tx.update(g, opt, p)
    return optax.apply_updates(p, upd), opt, val

  p, opt, curve, t = d_params, tx.init(d_params), [], time.time()
  for i in range(FLAGS.steps + 1):
    p, opt, val = step(p, opt, jax.random.fold_in(t_key, i))
    if i % 100 == 0:
      curve.append(f'{i}: {float(val):.3f}')
  out['enc_only L_enc'] = ', '.join(curve)
  out['enc_only s'] = round(time.time() - t, 1)
  return out


def main(argv) -> None:
  del argv
  arrays = data_lib.load('fashion', 'test', resolution=32, channels=1,
                         limit=64)
  real = pipeline.to_float(arrays['img'])
  rows = [probe(sz, real, jax.random.PRNGKey(i))
          for i, sz in enumerate(FLAGS.sizes)]
  keys = list(rows[0])
  lines = ['# DLSGAN miniature: encoder probes at initialization', '',
           'Sizes are `z_dim:w_dim:generator.ch_max:disc.ch_max` of '
           '`configs/stylegan_dls.py` (default preset otherwise). '
           '`ridge *->z`: held-out L_enc of a linear read-out of z '
           f'(fit on {FLAGS.n_fit} samples; 1 = nothing recovered). '
           '`|grad t| head/trunk`: gradient norm of D-loss term t at '
           'init on the latent head / the trunk (one real Fashion batch '
           'of 16, fakes from the random generator). `enc_only`: D '
           'trained on L_enc alone against the fixed random generator '
           f'for {FLAGS.steps} steps (step: L_enc; wall seconds).', '',
           '| ' + ' | '.join(keys) + ' |', '|---' * len(keys) + '|']
  for r in rows:
    lines.append('| ' + ' | '.join(
        f'{r[k]:.3f}' if isinstance(r[k], float) else str(r[k])
        for k in keys) + ' |')
  md = '\n'.join(lines) + '\n'
  with open(FLAGS.out, 'w') as f:
    f.write(md)
  print(md)


if __name__ == '__main__':
  cli.run(main, 'experiments.dls_diagnose')

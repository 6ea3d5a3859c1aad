"""GAN flavour ``dcgan``: train an unconditional DCGAN by depth scale d.

The recipe of Aguinaldo et al. (2019)'s teachers: a DCGAN generator and
discriminator (``gcjax.models.dcgan``) trained with either the
non-saturating GAN loss (``loss.adversarial='vanilla'``, as on their
Celeb-A) or WGAN-GP (``'wgan-gp'``: Wasserstein critic + ``gp_weight`` *
gradient penalty, ``n_critic`` critic updates per generator update).

One train step = ``n_critic`` discriminator updates and one generator
update. The real batch is cut into ``n_critic`` equal chunks, one per critic
update, so ``data.batch_size`` = ``n_critic`` x the per-update batch and
every real image is seen once. Each critic update draws its own z; the last
one shares its generator forward with the generator update (its VJP is
reused), as in the PyTorch DCGAN tutorial. Exports ``generator`` and
``disc``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gcjax import errors
from gcjax.methods.base import (
  Method,
  NetState,
  Network,
  apply_net,
  create_net_state,
  make_adam,
  output_update,
  prefix,
  require_data,
  variables_of,
)
from gcjax.models import dcgan
from gcjax.recipes import adversarial as adv_lib

ADVERSARIAL = ('vanilla', 'wgan-gp')
IMAGE_KEY = 'img'


@flax.struct.dataclass
class State:
  step: jax.Array
  gen: NetState
  disc: NetState


class Nets(NamedTuple):
  gen: dcgan.DCGANGenerator
  disc: dcgan.DCGANDiscriminator


class Txs(NamedTuple):
  gen: optax.GradientTransformation
  disc: optax.GradientTransformation


def critic_update(disc: NetState, module, tx, real, fake, key,
                  adv: adv_lib.Adversarial):
  """One critic update of a DCGAN discriminator (shared with ``kd``)."""
  return adv_lib.d_update(
      disc, adv_lib.train_apply(module), tx, real, [fake],
      kind=adv.loss_kind,
      gp_weight=adv.gp_weight if adv.kind == 'wgan-gp' else 0.0, gp_key=key)


def gen_adv_loss(module, disc: NetState, fake, adv: adv_lib.Adversarial):
  return adv_lib.g_adv_loss(adv_lib.train_apply(module), disc, fake,
                            adv.loss_kind)


def latent_inputs(nz: int):
  """``eval_inputs`` of a z -> image generator: ``z`` [B, nz] ~ N(0, I)."""
  def eval_inputs(batch, key):
    rows = len(next(iter(batch.values())))
    return {**batch, 'z': np.asarray(jax.random.normal(key, (rows, nz)))}
  return eval_inputs


def create_state(key, *, nets: Nets, txs: Txs, image_shape) -> State:
  g_key, d_key = jax.random.split(key)
  gen = create_net_state(nets.gen, txs.gen, g_key,
                         jnp.zeros((1, nets.gen.nz)))
  disc = create_net_state(nets.disc, txs.disc, d_key,
                          jnp.zeros((1, *image_shape)))
  return State(step=jnp.zeros((), jnp.int32), gen=gen, disc=disc)


def train_step(state: State, batch, key, frozen, *, nets: Nets, txs: Txs,
               adv: adv_lib.Adversarial):
  """``n_critic`` critic updates then one generator update."""
  del frozen
  key = jax.random.fold_in(key, state.step)
  keys = jax.random.split(key, 2 * adv.n_critic)
  z_keys, gp_keys = keys[:adv.n_critic], keys[adv.n_critic:]
  reals = adv_lib.chunks(batch[IMAGE_KEY], adv.n_critic)
  b, nz = reals[0].shape[0], nets.gen.nz
  disc = state.disc
  m_d = {}

  def g_fwd(params, z):
    (img, _), bs = apply_net(nets.gen, params, state.gen.batch_stats, z,
                             train=True)
    return img, bs

  for i in range(adv.n_critic - 1):
    fake, _ = g_fwd(state.gen.params, jax.random.normal(z_keys[i], (b, nz)))
    disc, m_d = critic_update(disc, nets.disc, txs.disc, reals[i], fake,
                              gp_keys[i], adv)

  z = jax.random.normal(z_keys[-1], (b, nz))
  fake, g_vjp, g_bs = jax.vjp(lambda p: g_fwd(p, z), state.gen.params,
                              has_aux=True)
  disc, m_d = critic_update(disc, nets.disc, txs.disc, reals[-1], fake,
                            gp_keys[-1], adv)
  gen, m_g = output_update(
      state.gen, txs.gen, g_vjp, fake,
      lambda x: (gen_adv_loss(nets.disc, disc, x, adv), {}),
      batch_stats=g_bs)
  new = state.replace(step=state.step + 1, gen=gen, disc=disc)
  return new, {**prefix('g', m_g), **prefix('d', m_d)}


def generator_fwd(state: State, batch, frozen, *, nets: Nets):
  """Images [B, R, R, C] in [-1, 1] from ``batch['z']`` (eval mode)."""
  del frozen
  (img, _), _ = apply_net(nets.gen, state.gen.params, state.gen.batch_stats,
                          batch['z'], train=False)
  return img


def make(config, sample_batch) -> Method:
  """Builds flavour ``dcgan`` from config.generator/disc/loss/optim.

  The image size and channels come from ``sample_batch['img']``.
  """
  require_data(sample_batch, 'gan (dcgan)')
  if IMAGE_KEY not in sample_batch:
    raise errors.UserError(
        f'gan flavour dcgan needs {IMAGE_KEY!r} images in the batch (e.g. '
        f'data name "fashion"); got keys {sorted(sample_batch)}')
  shape = tuple(sample_batch[IMAGE_KEY].shape[1:])
  g, d, lc = config.generator, config.disc, config.loss
  adv = adv_lib.Adversarial(kind=lc.adversarial, gp_weight=lc.gp_weight,
                            n_critic=lc.n_critic)
  adv_lib.check(adv, d.norm, ADVERSARIAL)
  nets = Nets(
      gen=dcgan.DCGANGenerator(d=g.d, nz=g.nz, out_ch=shape[-1],
                               resolution=shape[0], norm=g.norm),
      disc=dcgan.DCGANDiscriminator(d=d.d, resolution=shape[0],
                                    norm=d.norm))
  o = config.optim
  txs = Txs(gen=make_adam(**o.g, total_steps=config.total_steps),
            disc=make_adam(**o.d, total_steps=config.total_steps))

  def finalize(state, frozen):
    del frozen
    return {'generator': Network(nets.gen, variables_of(state.gen), (g.nz,),
                                 section='generator'),
            'disc': Network(nets.disc, variables_of(state.disc), shape,
                            section='disc')}

  return Method(
      init=partial(create_state, nets=nets, txs=txs, image_shape=shape),
      train_step=partial(train_step, nets=nets, txs=txs, adv=adv),
      predict={'generator': partial(generator_fwd, nets=nets)},
      finalize=finalize, export=('generator', 'disc'),
      sample_rows=('generator',), eval_inputs=latent_inputs(g.nz))

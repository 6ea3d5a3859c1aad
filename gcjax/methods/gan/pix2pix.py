"""GAN flavour ``pix2pix``: train a Pix2Pix teacher (cGAN + lambda * L1).

The pix2pix recipe: a U-Net generator and a conditional PatchGAN; each step
updates D on (src, tgt) vs (src, G(src)), then G with the adversarial loss
against the updated D plus ``lambda_l1`` * L1 to the target. One generator
forward per step: its VJP is reused for the generator update. Exports
``generator`` and ``disc`` (the discriminator later methods may use).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from gcjax import teachers
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
  warm_start,
)
from gcjax.recipes import adversarial as adv_lib
from gcjax.recipes import nets as nets_lib


@flax.struct.dataclass
class State:
  step: jax.Array
  gen: NetState
  disc: NetState


class Nets(NamedTuple):
  gen: object
  disc: object


class Txs(NamedTuple):
  gen: optax.GradientTransformation
  disc: optax.GradientTransformation


def create_state(key, sample, *, nets: Nets, txs: Txs, gen_init=None
                 ) -> State:
  g_key, d_key, drop_key = jax.random.split(key, 3)
  src = jnp.zeros((1, *sample['src'][0]), sample['src'][1])
  tgt = jnp.zeros((1, *sample['tgt'][0]), sample['tgt'][1])
  gen = create_net_state(nets.gen, txs.gen, {'params': g_key,
                                             'dropout': drop_key}, src)
  disc = create_net_state(nets.disc, txs.disc, d_key,
                          jnp.concatenate([src, tgt], -1))
  return State(step=jnp.zeros((), jnp.int32),
               gen=warm_start(gen, txs.gen, gen_init), disc=disc)


def train_step(state: State, batch, key, frozen, *, nets: Nets, txs: Txs,
               adv_kind: str, lambda_l1: float):
  """One D update then one G update. Returns (state, scalar metrics)."""
  del frozen
  key = jax.random.fold_in(key, state.step)
  drop_key, = jax.random.split(key, 1)
  src, tgt = batch['src'], batch['tgt']

  def gen_fwd(params):
    (img, _), bs = apply_net(nets.gen, params, state.gen.batch_stats, src,
                             train=True, key=drop_key)
    return img, bs

  fake, g_vjp, g_bs = jax.vjp(gen_fwd, state.gen.params, has_aux=True)
  d_apply = adv_lib.conditional(adv_lib.train_apply(nets.disc), src)
  disc, m_d = adv_lib.d_update(state.disc, d_apply, txs.disc, tgt, [fake],
                               kind=adv_kind)

  def out_loss(img):
    adv = adv_lib.g_adv_loss(d_apply, disc, img, adv_kind)
    l1 = jnp.mean(jnp.abs(img - tgt))
    return adv + lambda_l1 * l1, {'adv': adv, 'l1': l1}

  gen, m_g = output_update(state.gen, txs.gen, g_vjp, fake, out_loss,
                           batch_stats=g_bs)
  new = state.replace(step=state.step + 1, gen=gen, disc=disc)
  return new, {**prefix('g', m_g), **prefix('d', m_d)}


def generator_fwd(state: State, batch, frozen, *, nets: Nets):
  del frozen
  (img, _), _ = apply_net(nets.gen, state.gen.params, state.gen.batch_stats,
                          batch['src'], train=False)
  return img


def make(config, sample_batch) -> Method:
  """Builds ``gan`` (pix2pix) from ``config.generator/disc/loss/optim``.

  ``config.generator.init`` (a ``gcjax.teachers`` spec) warm-starts the
  generator.
  """
  require_data(sample_batch, 'gan (pix2pix)')
  out_ch = sample_batch['tgt'].shape[-1]
  nets = Nets(gen=nets_lib.unet_generator(config.generator, out_ch),
              disc=nets_lib.patch_discriminator(config.disc))
  o = config.optim
  txs = Txs(gen=make_adam(**o.g, total_steps=config.total_steps),
            disc=make_adam(**o.d, total_steps=config.total_steps))
  sample = {k: (tuple(v.shape[1:]), v.dtype) for k, v in sample_batch.items()}
  src_shape = tuple(sample_batch['src'].shape[1:])
  gen_init = teachers.load_like(
      config.generator.init, nets.gen,
      jnp.zeros((1, *src_shape), jnp.float32), 'generator.init')
  pair_shape = (*src_shape[:-1], src_shape[-1] + out_ch)

  def finalize(state, frozen):
    del frozen
    return {'generator': Network(nets.gen, variables_of(state.gen),
                                 src_shape, section='generator'),
            'disc': Network(nets.disc, variables_of(state.disc), pair_shape,
                            section='disc')}

  return Method(
      init=partial(create_state, sample=sample, nets=nets, txs=txs,
                   gen_init=gen_init),
      train_step=partial(train_step, nets=nets, txs=txs,
                         adv_kind=config.loss.adversarial,
                         lambda_l1=config.loss.lambda_l1),
      predict={'generator': partial(generator_fwd, nets=nets)},
      finalize=finalize, export=('generator', 'disc'),
      sample_rows=('src', 'generator', 'tgt'))

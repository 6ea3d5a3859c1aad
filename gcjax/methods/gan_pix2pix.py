"""GAN flavour `pix2pix`: train a Pix2Pix teacher (conditional GAN + lambda * L1).

The pix2pix recipe: a U-Net generator and a conditional PatchGAN; each step
updates D on (src, tgt) vs (src, G(src)), then G with the adversarial loss
against the updated D plus ``lambda_l1`` * L1 to the target. One generator
forward per step: its VJP is reused for the generator update.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from gcjax.methods import pix2pix_nets as p2p
from gcjax.methods.base import (
  CostModel,
  Method,
  NetState,
  apply_gradients,
  create_net_state,
  global_norm,
  make_adam,
  prefix,
)


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


def create_state(key, sample, *, nets: Nets, txs: Txs) -> State:
  g_key, d_key, drop_key = jax.random.split(key, 3)
  src = jnp.zeros((1, *sample['src'][0]), sample['src'][1])
  tgt = jnp.zeros((1, *sample['tgt'][0]), sample['tgt'][1])
  gen = create_net_state(nets.gen, txs.gen, {'params': g_key,
                                             'dropout': drop_key}, src)
  disc = create_net_state(nets.disc, txs.disc, d_key,
                          jnp.concatenate([src, tgt], -1))
  return State(step=jnp.zeros((), jnp.int32), gen=gen, disc=disc)


def train_step(state: State, batch, key, frozen, *, nets: Nets, txs: Txs,
               adv_kind: str, lambda_l1: float):
  """One D update then one G update. Returns (state, scalar metrics)."""
  del frozen
  key = jax.random.fold_in(key, state.step)
  drop_key, = jax.random.split(key, 1)
  src, tgt = batch['src'], batch['tgt']

  def gen_fwd(params):
    (img, _), bs = p2p.gen_apply(nets.gen, params, state.gen.batch_stats, src,
                                 drop_key, train=True)
    return img, bs

  fake, g_vjp, g_bs = jax.vjp(gen_fwd, state.gen.params, has_aux=True)
  disc, m_d = p2p.disc_update(state.disc, nets.disc, txs.disc, src, tgt,
                              [fake], adv_kind)

  def out_loss(img):
    adv = p2p.gen_adv_loss(nets.disc, disc, src, img, adv_kind)
    l1 = jnp.mean(jnp.abs(img - tgt))
    return adv + lambda_l1 * l1, {'adv': adv, 'l1': l1}

  (g_loss, m_g), d_img = jax.value_and_grad(out_loss, has_aux=True)(fake)
  grads, = g_vjp(d_img)
  m_g = {**m_g, 'loss': g_loss, 'grad_norm': global_norm(grads)}
  gen = apply_gradients(state.gen, grads, txs.gen, batch_stats=g_bs)
  new = state.replace(step=state.step + 1, gen=gen, disc=disc)
  return new, {**prefix('g', m_g), **prefix('d', m_d)}


def generator_fwd(state: State, batch, frozen, *, nets: Nets):
  del frozen
  (img, _), _ = p2p.gen_apply(nets.gen, state.gen.params,
                              state.gen.batch_stats, batch['src'], None,
                              train=False)
  return img


def make(config, sample_batch) -> Method:
  """Builds the ``gan`` method from ``config.generator/disc/loss/optim``."""
  out_ch = sample_batch['tgt'].shape[-1]
  nets = Nets(gen=p2p.make_unet(config.generator, out_ch),
              disc=p2p.make_patchgan(config.disc))
  o = config.optim
  txs = Txs(gen=make_adam(**o.g, total_steps=config.total_steps),
            disc=make_adam(**o.d, total_steps=config.total_steps))
  sample = {k: (tuple(v.shape[1:]), v.dtype) for k, v in sample_batch.items()}

  def gen_cost(v, x):
    return nets.gen.apply(v, x, train=False)[0]

  def gen_vars(state, frozen):
    del frozen
    return {'params': state.gen.params, 'batch_stats': state.gen.batch_stats}

  return Method(
      init=partial(create_state, sample=sample, nets=nets, txs=txs),
      train_step=partial(train_step, nets=nets, txs=txs,
                         adv_kind=config.loss.adversarial,
                         lambda_l1=config.loss.lambda_l1),
      predict={'generator': partial(generator_fwd, nets=nets)},
      sample_rows=('src', 'generator', 'tgt'),
      cost_models={'generator': CostModel(
          gen_cost, gen_vars, tuple(sample_batch['src'].shape[1:]))},
      target_key='tgt', reference=None)

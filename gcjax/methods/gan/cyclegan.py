"""GAN flavour ``cyclegan``: train a CycleGAN (unpaired A <-> B).

The whole step is ``gcjax.recipes.cycle.cycle_update`` (both generators,
both discriminators, image pools). The A -> B generator ``g_a`` is
evaluated and sampled; all four networks are exported (``g_a``, ``g_b``,
``d_a``, ``d_b``).
"""

from __future__ import annotations

from functools import partial

import flax
import jax
import jax.numpy as jnp

from gcjax.methods.base import (
  Method,
  Network,
  apply_net,
  require_data,
  variables_of,
)
from gcjax.recipes import cycle as cycle_lib


@flax.struct.dataclass
class State:
  step: jax.Array
  cycle: cycle_lib.CycleState


def train_step(state: State, batch, key, frozen, *, nets, txs, w,
               a_key: str, b_key: str):
  """One CycleGAN step. Returns (state, scalar metrics)."""
  del frozen
  key = jax.random.fold_in(key, state.step)
  cycle, metrics, _ = cycle_lib.cycle_update(
      state.cycle, batch[a_key], batch[b_key], key, nets=nets, txs=txs, w=w)
  return state.replace(step=state.step + 1, cycle=cycle), metrics


def _g_a_fwd(state: State, batch, frozen, *, module, a_key: str):
  del frozen
  (img, _), _ = apply_net(module, state.cycle.g_a.params,
                          state.cycle.g_a.batch_stats, batch[a_key],
                          train=False)
  return img


def make(config, sample_batch) -> Method:
  """Builds ``gan`` (cyclegan) from config.cyclegan/generator/disc/optim.

  ``config.cyclegan.domains`` names the batch keys of A and B.
  """
  require_data(sample_batch, 'gan (cyclegan)')
  a_key, b_key = cycle_lib.domain_keys(config, sample_batch)
  a_shape = tuple(sample_batch[a_key].shape[1:])
  b_shape = tuple(sample_batch[b_key].shape[1:])
  nets, txs, w = cycle_lib.make_cycle(config, a_shape, b_shape,
                                      config.generator)

  def init(key):
    return State(step=jnp.zeros((), jnp.int32),
                 cycle=cycle_lib.create_cycle_state(
                     key, a_shape, b_shape, nets=nets, txs=txs,
                     pool_size=config.cyclegan.pool_size))

  def finalize(state, frozen):
    del frozen
    c = state.cycle
    return {'g_a': Network(nets.g_a, variables_of(c.g_a), a_shape,
                           section='generator'),
            'g_b': Network(nets.g_b, variables_of(c.g_b), b_shape,
                           section='generator'),
            'd_a': Network(nets.d_a, variables_of(c.d_a), b_shape,
                           section='disc'),
            'd_b': Network(nets.d_b, variables_of(c.d_b), a_shape,
                           section='disc')}

  return Method(
      init=init,
      train_step=partial(train_step, nets=nets, txs=txs, w=w, a_key=a_key,
                         b_key=b_key),
      predict={'g_a': partial(_g_a_fwd, module=nets.g_a, a_key=a_key)},
      finalize=finalize, export=('g_a', 'g_b', 'd_a', 'd_b'),
      sample_rows=(a_key, 'g_a', b_key))

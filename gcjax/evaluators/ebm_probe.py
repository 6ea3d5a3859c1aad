"""``ebm_probe``: held-out probes of a VEM energy net E(t, s).

On the test split, with s the scored prediction (the student output) and
t+ its target (a batch key such as ``'tgt'``, or a predict such as
``'teacher'``):

* ``ebm_shuffle_gap`` = mean E(t+ of another row, s) - E(t+, s): positive
  when the EBM knows which target belongs to which student output, i.e.
  when it carries information about the pairing (mutual information);
  ``ebm_shuffle_acc`` is the fraction of rows where the true pair has the
  lower energy (0.5 = chance). The other row is the next one in the batch
  (a one-row batch pairs with itself and adds 0).
* ``ebm_neg_gap`` = mean E(t~, s) - E(t+, s), t~ from the Langevin chain
  the EBM trained against (started at s, its recorded K, eta, sigma, clip).
* ``ebm_e_pos``: mean E(t+, s).

The energy net is ``Method.finalize``'s network ``net`` (``'ebm'``: a
``models.energy.PairEnergy``, which records the sampler settings).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gcjax import errors
from gcjax.evaluators import common
from gcjax.langevin import langevin


def probe_energies(energy_fn: Callable[[jax.Array, jax.Array], jax.Array],
                   t_pos: jax.Array, s: jax.Array, key: jax.Array, *,
                   n_steps: int, step_size: float, noise_std: float,
                   clip, clip_at: str) -> dict[str, jax.Array]:
  """Per-row energies of the true, shuffled and Langevin pairs (pure).

  Args:
    energy_fn: ``(t, s) -> [B]`` energies.
    t_pos: [B, H, W, C] float32 targets.
    s: [B, H, W, C'] float32 student outputs.
    key: PRNG key of the Langevin chain.
    n_steps, step_size, noise_std, clip, clip_at: ``langevin`` keywords.

  Returns:
    ``{'e_pos', 'e_shuffled', 'e_neg'}``, each [B] float32.
  """
  t_neg, _ = langevin(lambda t: energy_fn(t, s), s, key, n_steps=n_steps,
                      step_size=step_size, noise_std=noise_std, clip=clip,
                      clip_at=clip_at)
  return {'e_pos': energy_fn(t_pos, s),
          'e_shuffled': energy_fn(jnp.roll(t_pos, 1, axis=0), s),
          'e_neg': energy_fn(t_neg, s)}


class Evaluator:

  def __init__(self, names: common.Names, *, net: str = 'ebm',
               pred='student', target='tgt', limit: int = 0):
    self.names = names
    self.net = net
    self.pred = common.check_pred(pred, names)
    self.target = common.check_target(target, names)
    if len(self.target) != 1:
      raise errors.UserError(f'ebm_probe: target must name one batch key or '
                             f'predict, got {self.target}')
    self.limit = limit

  def run(self, ctx: common.Context, seed: int):
    nets = ctx.networks()
    if self.net not in nets:
      raise errors.UserError(
          f'ebm_probe: net {self.net!r} is not a finished network of this '
          f'method (it has {sorted(nets)}); the probe needs mi.kind=vem')
    network = nets[self.net]
    m = network.module
    t_name = self.target[0]

    @jax.jit
    def probe(variables, t, s, key):
      energy = lambda a, b: m.apply(variables, jnp.concatenate([a, b], -1),
                                    train=False)[0]
      return probe_energies(energy, t, s, key, n_steps=m.n_steps,
                            step_size=m.step_size, noise_std=m.noise_std,
                            clip=m.clip, clip_at=m.clip_at)

    sums = common.Sums()
    needed = common.needed(self.pred, self.target, self.names)
    for i, (batch, preds) in enumerate(ctx.stream(needed, self.limit,
                                                  seed)):
      t = batch[t_name] if t_name in batch else preds[t_name]
      sums.count += len(t)
      key = jax.random.fold_in(jax.random.key(seed), i)
      for p in self.pred:
        e = jax.device_get(probe(network.variables, t, preds[p], key))
        shuffle = np.asarray(e['e_shuffled'] - e['e_pos'])
        sums.add(p, 'ebm_shuffle_gap', shuffle)
        sums.add(p, 'ebm_shuffle_acc', (shuffle > 0).astype(np.float32))
        sums.add(p, 'ebm_neg_gap', e['e_neg'] - e['e_pos'])
        sums.add(p, 'ebm_e_pos', e['e_pos'])
    return sums.means()

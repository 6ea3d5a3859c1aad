"""Per-network train state and the optimizer plumbing every update shares.

Neutral ground below ``methods`` and ``objectives``: both import it.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import optax

PyTree = Any


@flax.struct.dataclass
class NetState:
  """One network's trainable state: arrays only, no modules or transforms."""
  params: PyTree
  opt_state: PyTree
  batch_stats: PyTree = None


def create_net_state(module, tx: optax.GradientTransformation,
                     key: jax.Array, *sample_args, **sample_kwargs) -> NetState:
  """Initializes a linen module and its optimizer into a NetState."""
  variables = module.init(key, *sample_args, **sample_kwargs)
  params = variables['params']
  return NetState(params=params, opt_state=tx.init(params),
                  batch_stats=variables.get('batch_stats'))


def variables_of(net: NetState) -> dict[str, PyTree]:
  """The linen variable dict of a NetState (params + batch stats if any)."""
  v = {'params': net.params}
  if net.batch_stats is not None:
    v['batch_stats'] = net.batch_stats
  return v


def apply_gradients(net: NetState, grads: PyTree,
                    tx: optax.GradientTransformation,
                    batch_stats: PyTree = None) -> NetState:
  """One optimizer update; optionally replaces the batch statistics."""
  updates, opt_state = tx.update(grads, net.opt_state, net.params)
  params = optax.apply_updates(net.params, updates)
  return net.replace(
      params=params, opt_state=opt_state,
      batch_stats=net.batch_stats if batch_stats is None else batch_stats)


def prefix(name: str, metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """``{'loss': x}`` -> ``{'name/loss': x}``."""
  return {f'{name}/{k}': v for k, v in metrics.items()}


def global_norm(tree: PyTree) -> jax.Array:
  return optax.tree.norm(tree)


def make_adam(lr: float, b1: float, b2: float, total_steps: int,
              decay: str = 'none', decay_start: int = 0
              ) -> optax.GradientTransformation:
  """Adam with the pix2pix/OMGD schedules.

  Args:
    lr: peak learning rate.
    b1, b2: Adam betas.
    total_steps: run length in steps.
    decay: ``'none'`` (constant) or ``'linear'`` (constant until
      ``decay_start`` then linearly to zero at ``total_steps``, as pix2pix's
      ``n_epochs`` + ``n_epochs_decay``).
    decay_start: step where the linear decay begins.
  """
  if decay == 'none':
    sched = lr
  elif decay == 'linear':
    sched = optax.join_schedules(
        [optax.constant_schedule(lr),
         optax.linear_schedule(lr, 0.0, max(1, total_steps - decay_start))],
        [decay_start])
  else:
    raise ValueError(f"optim decay must be 'none' or 'linear', got {decay!r}")
  return optax.adam(sched, b1=b1, b2=b2)

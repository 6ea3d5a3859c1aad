"""Per-network train state and the optimizer plumbing every update shares.

Neutral ground below ``methods`` and ``objectives``: both import it.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import optax

from gcjax import precision

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


def warm_start(net: NetState, tx: optax.GradientTransformation,
               variables: PyTree | None) -> NetState:
  """``net`` with ``variables`` (a loaded network) as its starting point.

  The optimizer state starts fresh; ``None`` leaves ``net`` as it is.
  """
  if variables is None:
    return net
  params = variables['params']
  return NetState(params=params, opt_state=tx.init(params),
                  batch_stats=variables.get('batch_stats', net.batch_stats))


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


def apply_net(module, params: PyTree, batch_stats: PyTree, x, *,
              train: bool, key: jax.Array | None = None):
  """The one way to run a network that returns ``(output, features)``.

  Args:
    module: a linen module called as ``module(x, train=...)``.
    params, batch_stats: its variables (``batch_stats`` None: no norm stats).
    x: its input.
    train: train mode (dropout on, batch statistics used and updated).
    key: the dropout key in train mode (None: the module has no dropout).

  Returns:
    ``(module output, new batch_stats)``; in eval mode or without batch
    statistics the latter is ``batch_stats`` unchanged.
  """
  v = {'params': params}
  if batch_stats is not None:
    v['batch_stats'] = batch_stats
  if not train:
    return precision.apply(module, v, x, train=False), batch_stats
  mutable = ['batch_stats'] if batch_stats is not None else []
  rngs = {'dropout': key} if key is not None else {}
  out, upd = precision.apply(module, v, x, train=True, rngs=rngs,
                             mutable=mutable)
  return out, upd.get('batch_stats', batch_stats)


def output_update(net: NetState, tx: optax.GradientTransformation, vjp,
                  out, out_loss, *, batch_stats: PyTree = None):
  """One update of a network from a loss on its output.

  The GAN pattern: the network ran once (``out, vjp = jax.vjp(fwd, params)``)
  and its output was used elsewhere (e.g. a discriminator update) before
  the loss; the loss's gradient w.r.t. the output is pulled back through
  the saved VJP, so the network runs forward once per step.

  Args:
    net: the network's state.
    tx: its optimizer.
    vjp: the pull-back of ``out`` w.r.t. ``net.params``.
    out: the network's output (any pytree ``out_loss`` takes).
    out_loss: ``fn(out) -> (scalar loss, metrics dict)``.
    batch_stats: the batch statistics of the forward pass (None: keep).

  Returns:
    (new state, metrics + ``loss`` and ``grad_norm``).
  """
  (loss, m), d_out = jax.value_and_grad(out_loss, has_aux=True)(out)
  grads, = vjp(d_out)
  m = {**m, 'loss': loss, 'grad_norm': global_norm(grads)}
  return apply_gradients(net, grads, tx, batch_stats=batch_stats), m


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

"""The surface every method shares: network states, sub-updates, the plug-in record.

A method module (``gcjax.methods.<name>``) exposes ``make(config, sample_batch)
-> Method``. The trainer only ever talks to the ``Method`` record, so adding a
method never edits ``train.py``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class NetState:
  """One network's trainable state: arrays only, no modules or transforms."""
  params: PyTree
  opt_state: PyTree
  batch_stats: PyTree = None


class CostModel(NamedTuple):
  """A network whose cost (params, MACs, latency) goes into results tables.

  ``fwd(variables, x)`` maps an input batch to an output batch;
  ``variables(state, frozen)`` extracts the variables it needs from the train
  state or the frozen arrays;
  ``input_shape`` is the per-example input shape (no batch axis).
  """
  fwd: Callable[[PyTree, jax.Array], jax.Array]
  variables: Callable[[PyTree], PyTree]
  input_shape: tuple[int, ...]
  input_dtype: Any = jnp.float32


class Method(NamedTuple):
  """What the trainer needs from a method.

  Attributes:
    init: ``init(key) -> state``; pure, so ``jax.eval_shape(init, key)`` gives
      the restore target and sharding tree.
    train_step: ``train_step(state, batch, key, frozen) -> (state,
      metrics)``; pure, jitted once by the trainer. ``key`` is the loop key;
      the step folds in ``state.step`` itself. Metrics are scalars.
    predict: name -> ``fn(state, batch, frozen) -> [B, H, W, C] float32 in
      [-1, 1]`` (e.g. ``'teacher'``, ``'student'``); what evaluators and
      grids use.
    sample_rows: names of batch entries and predict fns, in the order the
      sample grid shows them (e.g. ``('src', 'teacher', 'student', 'tgt')``).
    cost_models: name -> CostModel for the results table.
    target_key: batch entry that holds ground truth images (or None).
    reference: predict name that students are compared against (or None).
    latent_dim: if set, evaluation batches get ``z`` [B, latent_dim] normal
      latents (unconditional generators).
    frozen: arrays that are inputs but never trained or checkpointed (a
      pretrained teacher, the VGG16 trunk of perceptual losses). The trainer
      places them on the devices once and passes them to every function.
  """
  init: Callable[[jax.Array], PyTree]
  train_step: Callable[..., tuple[PyTree, dict[str, jax.Array]]]
  predict: dict[str, Callable[[PyTree, dict[str, jax.Array]], jax.Array]]
  sample_rows: tuple[str, ...]
  cost_models: dict[str, CostModel]
  target_key: str | None = 'tgt'
  reference: str | None = None
  latent_dim: int | None = None
  frozen: PyTree = None


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
  return optax.global_norm(tree)


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

"""The surface every method shares: network states, sub-updates, the plug-in record.

A method module (``gcjax.methods.<name>``) exposes ``make(config, sample_batch)
-> Method``. The trainer only ever talks to the ``Method`` record, so adding a
method never edits ``train.py``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from gcjax.state import (  # noqa: F401  (re-exported for methods)
  NetState,
  apply_gradients,
  create_net_state,
  global_norm,
  make_adam,
  prefix,
  variables_of,
)

PyTree = Any


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

"""The plug-in record every method returns, and the network record.

A method module (``gcjax.methods.<name>``) exposes ``make(config,
sample_batch) -> Method``. The trainer only ever talks to the ``Method``
record, so adding a method never edits ``train.py``; see
``docs/adding_a_method.md`` for the contract and a worked example.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from gcjax import errors
from gcjax.state import (  # noqa: F401  (re-exported for methods)
  NetState,
  apply_gradients,
  apply_net,
  create_net_state,
  global_norm,
  make_adam,
  output_update,
  prefix,
  variables_of,
  warm_start,
)

PyTree = Any
Batch = dict[str, Any]


class Network(NamedTuple):
  """A finished network: what is costed, exported and rebuilt later.

  ``module.apply(variables, x, train=False)`` returns ``(output,
  features)``; ``input_shape`` is the per-example input shape (no batch
  axis). ``section`` names the config section the module was built from
  (bookkeeping in exports; '' when it has none).
  """
  module: Any
  variables: PyTree
  input_shape: tuple[int, ...]
  input_dtype: Any = jnp.float32
  section: str = ''

  def fwd(self, variables, x):
    """The network's output (features dropped), eval mode."""
    return self.module.apply(variables, x, train=False)[0]


def require_data(sample_batch, method: str) -> None:
  """Raises UserError when a method that trains on data got none
  (``config.data.name=''``); call it first in such a method's ``make``."""
  if sample_batch is None:
    raise errors.UserError(f'{method} trains on data, but config.data.name '
                           "is '' (no dataset): set config.data")


def no_eval_inputs(batch: Batch, key: jax.Array) -> Batch:
  """``eval_inputs`` of methods whose networks read only the data."""
  del key
  return batch


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
      sample grids read. A predict fn sees the evaluation batch after
      ``eval_inputs``.
    finalize: ``finalize(state, frozen) -> {name: Network}``: the finished
      networks (generators, discriminators, encoders; frozen teachers too)
      for the cost table, exports and later runs. Runs on the host once
      training is done: this is where a pruned network is materialized
      into a smaller dense one.
    export: names in ``finalize``'s dict that the run writes to
      ``export/`` (trained networks; not frozen pretrained inputs).
    sample_rows: names of batch entries and predict fns, in the order the
      sample grid shows them (e.g. ``('src', 'teacher', 'student', 'tgt')``).
    eval_inputs: ``fn(batch, key) -> batch``: adds what the predict fns
      need besides the data (latents ``z``, teacher-made inputs) to an
      evaluation or sample-grid batch; ``key`` is fixed per batch, so every
      evaluation sees the same inputs.
    needs_data: False for a data-free method: the trainer then loads no
      dataset; the train step gets an empty batch (``{}``) and evaluations
      a row counter (``'_row'``) that ``eval_inputs`` turns into inputs.
    frozen: arrays that are inputs but never trained or checkpointed (a
      pretrained teacher, the VGG16 trunk of perceptual losses). The trainer
      places them on the devices once and passes them to every function.
  """
  init: Callable[[jax.Array], PyTree]
  train_step: Callable[..., tuple[PyTree, dict[str, jax.Array]]]
  predict: dict[str, Callable[[PyTree, Batch, PyTree], jax.Array]]
  finalize: Callable[[PyTree, PyTree], dict[str, Network]]
  export: tuple[str, ...]
  sample_rows: tuple[str, ...]
  eval_inputs: Callable[[Batch, jax.Array], Batch] = no_eval_inputs
  needs_data: bool = True
  frozen: PyTree = None

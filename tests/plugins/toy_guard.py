"""A toy method whose one sub-loss turns non-finite at a chosen step.

Tests of the non-finite guard use it as ``config.method =
'plugins.toy_guard'``: a parameter vector ``w`` is fitted by Adam to
``loss = fit + bad`` with ``fit = mean((w - 1)^2)`` and ``bad = sqrt(1 +
mean(w^2))``. At step ``config.toy.bad_step`` the term ``bad`` goes wrong
inside the loss, not in the inputs: ``config.toy.bad = 'nan'`` takes the
square root of a negative number (NaN loss and gradients), ``'inf'``
multiplies it by exp(100), which overflows float32 (+inf loss and +-inf
gradients, no NaN). Data-free; no dataset is loaded.
"""

from functools import partial

import flax
import jax
import jax.numpy as jnp
import optax

from gcjax.methods.base import Method, global_norm, prefix


@flax.struct.dataclass
class State:
  step: jax.Array
  w: jax.Array
  opt_state: optax.OptState


def init(key, *, tx, dim: int):
  w = jax.random.normal(key, (dim,))
  return State(step=jnp.zeros((), jnp.int32), w=w, opt_state=tx.init(w))


def train_step(state, batch, key, frozen, *, tx, bad_step: int, bad: str):
  del batch, key, frozen
  now = state.step == bad_step

  def loss_fn(w):
    fit = jnp.mean(jnp.square(w - 1.0))
    arg = 1.0 + jnp.mean(jnp.square(w))
    if bad == 'nan':
      term = jnp.sqrt(jnp.where(now, -arg, arg))
    else:
      term = jnp.exp(jnp.where(now, 100.0, 0.0)) * jnp.sqrt(arg)
    return fit + term, {'fit': fit, 'bad': term}

  (loss, parts), g = jax.value_and_grad(loss_fn, has_aux=True)(state.w)
  updates, opt_state = tx.update(g, state.opt_state, state.w)
  new = state.replace(step=state.step + 1,
                      w=optax.apply_updates(state.w, updates),
                      opt_state=opt_state)
  return new, prefix('toy', {**parts, 'loss': loss,
                             'grad_norm': global_norm(g)})


def predict(state, batch, frozen):
  del frozen
  rows = batch['_row'].shape[0]
  img = jnp.tanh(state.w[:4]).reshape(1, 2, 2, 1)
  return jnp.broadcast_to(img, (rows, 2, 2, 1))


def make(config, sample_batch) -> Method:
  del sample_batch
  tx = optax.adam(config.toy.lr)
  return Method(
      init=partial(init, tx=tx, dim=8),
      train_step=partial(train_step, tx=tx, bad_step=config.toy.bad_step,
                         bad=config.toy.bad),
      predict={'w': predict}, finalize=lambda state, frozen: {}, export=(),
      sample_rows=('w',), needs_data=False)

"""Pruning masks and sparsity schedules (pure functions).

A mask is a boolean pytree shaped like a network's params: True keeps a
weight, False holds it at exactly zero. Masks live in the train state and
are re-applied after every optimizer update (:func:`apply_masks`), so a
pruned weight never comes back. Two granularities:

* fine-grained (:func:`magnitude_masks`): individual weights of the chosen
  conv kernels by magnitude, with a per-layer or one global threshold;
* filter (:func:`filter_masks`): whole output channels of the chosen convs
  by the L1 norm of their filters. A pruned channel also takes its conv
  bias, its norm's scale and shift (so the channel is exactly zero after
  the norm, in train and eval mode) and the matching input channels of
  every layer that reads it (``gcjax.channels`` describes who reads what).

Ties are broken by position, so ``round(sparsity * n)`` weights (or
filters) are pruned exactly. Already-pruned weights rank below every kept
one, so a growing schedule only ever adds to a mask. Sparsities may be
traced values (the AGP schedule inside a jitted step).

Schedules (:class:`Schedule`): ``oneshot`` (the final sparsity from step 0)
and ``agp`` (Zhu & Gupta's cubic ramp s_t = s_i + (s_f - s_i) (1 - (1 -
p)^3), p the position in the [start, end] window, the mask recomputed every
``every`` steps and at ``end``).

Layers are named by their module path ('conv1', 'down2_conv'); the default
selection (:func:`default_layers`) is every conv but the first and the
last.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import traverse_util

from gcjax import errors

PyTree = Any
KINDS = ('fine', 'filter')
SCOPES = ('layer', 'global')
SCHEDULES = ('oneshot', 'agp')


# -- layers -----------------------------------------------------------------

def _run_order(name: str):
  """Sort key that puts gcjax's layer names in the order they run: numbers
  compare as numbers, and a U-Net's decoder ('up{i}...') runs after its
  encoder ('down{i}...') from the innermost level out."""
  parts = re.split(r'(\d+)', name)
  key = tuple(int(p) if p.isdigit() else p for p in parts)
  if name.startswith('up') and len(parts) > 1:
    return (1, -int(parts[1]), key)
  return (0, 0, key)


def conv_layers(params: PyTree) -> tuple[str, ...]:
  """Module paths of the conv kernels (4-D ``kernel`` leaves) in the order
  the network runs them (for gcjax's models' layer names; params dicts
  lose their creation order in tree maps)."""
  flat = traverse_util.flatten_dict(params, sep='/')
  names = [k[:-len('/kernel')] for k, v in flat.items()
           if k.endswith('/kernel') and jnp.ndim(v) == 4]
  return tuple(sorted(names, key=_run_order))


def default_layers(params: PyTree) -> tuple[str, ...]:
  """Every conv but the first and the last (the usual choice: the first
  sees the input, the last makes the image)."""
  return conv_layers(params)[1:-1]


def check_layers(params: PyTree, layers: Sequence[str],
                 key: str = 'prune.layers') -> tuple[str, ...]:
  """``layers`` or, when empty, :func:`default_layers`; UserError on a name
  that is not a conv of the network."""
  known = conv_layers(params)
  if not layers:
    return default_layers(params)
  bad = [n for n in layers if n not in known]
  if bad:
    raise errors.UserError(f'config.{key}: {bad} are not convs of this '
                           f'network; it has {list(known)}')
  return tuple(layers)


def _get(tree, path: str):
  for p in path.split('/'):
    tree = tree[p]
  return tree


def ones_like(params: PyTree) -> PyTree:
  """The all-keeping mask of ``params``."""
  return jax.tree.map(lambda x: jnp.ones(jnp.shape(x), bool), params)


def apply_masks(params: PyTree, masks: PyTree) -> PyTree:
  """``params`` with every masked-out weight set to exactly zero."""
  return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)),
                      params, masks)


def _set(masks: PyTree, path: str, value) -> PyTree:
  flat = traverse_util.flatten_dict(masks, sep='/')
  flat[path] = value
  return traverse_util.unflatten_dict(flat, sep='/')


# -- ranking with exact counts ---------------------------------------------

def _keep_top(scores: jax.Array, n_prune) -> jax.Array:
  """Keeps all but the ``n_prune`` lowest scores of a 1-D array.

  A stable argsort breaks ties by position, so exactly ``n_prune`` entries
  are dropped; ``n_prune`` may be traced.
  """
  order = jnp.argsort(scores, stable=True)
  rank = jnp.zeros(scores.shape, jnp.int32).at[order].set(
      jnp.arange(scores.size, dtype=jnp.int32))
  return rank >= n_prune


def n_pruned(sparsity, n: int, keep_min: int = 0):
  """round(sparsity * n), at most ``n - keep_min`` (an int32 array)."""
  k = jnp.round(jnp.asarray(sparsity, jnp.float32) * n).astype(jnp.int32)
  return jnp.clip(k, 0, n - keep_min)


def _check_sparsity(sparsity) -> None:
  if isinstance(sparsity, (int, float)) and not 0.0 <= sparsity < 1.0:
    raise errors.UserError(f'config.prune.sparsity={sparsity}; expected a '
                           'fraction in [0, 1)')


def magnitude_masks(params: PyTree, sparsity, layers: Sequence[str], *,
                    scope: str = 'layer', prev: PyTree = None) -> PyTree:
  """Fine-grained masks: the smallest-magnitude weights of ``layers``.

  Args:
    params: the network's params.
    sparsity: fraction of each layer's kernel (``scope='layer'``) or of all
      their weights together (``'global'``) to prune; may be traced.
    layers: module paths of the convs to prune (kernels only; biases and
      norms stay).
    scope: 'layer' (one threshold per layer) or 'global' (one for all).
    prev: the current masks (None: all kept); weights they prune stay
      pruned.

  Returns:
    Boolean masks like ``params``.
  """
  if scope not in SCOPES:
    raise errors.UserError(f'config.prune.scope={scope!r}; expected one of '
                           f'{SCOPES}')
  _check_sparsity(sparsity)
  masks = ones_like(params) if prev is None else prev
  scores = {}
  for name in layers:
    w = _get(params, name)['kernel']
    m = _get(masks, name)['kernel']
    # Pruned weights score -1 (below every |w|): they stay pruned.
    scores[name] = jnp.where(m, jnp.abs(w), -1.0).ravel()
  if scope == 'layer':
    for name, s in scores.items():
      keep = _keep_top(s, n_pruned(sparsity, s.size))
      shape = _get(params, name)['kernel'].shape
      masks = _set(masks, f'{name}/kernel', keep.reshape(shape))
    return masks
  flat = jnp.concatenate(list(scores.values()))
  keep = _keep_top(flat, n_pruned(sparsity, flat.size))
  start = 0
  for name, s in scores.items():
    shape = _get(params, name)['kernel'].shape
    masks = _set(masks, f'{name}/kernel',
                 keep[start:start + s.size].reshape(shape))
    start += s.size
  return masks


# -- filters ----------------------------------------------------------------

class Group(NamedTuple):
  """One conv's output channels and everything indexed by them.

  Attributes:
    producer: module path of the conv whose kernel's last axis (``[k, k,
      C_in, C_out]`` for convs and gcjax's transposed convs alike) holds
      the channels.
    vectors: paths of 1-D params indexed by the channel (the conv's bias,
      the following norm's scale and bias).
    stats: paths of 1-D ``batch_stats`` indexed by the channel (the norm's
      running mean and var).
    consumers: ``(module path, offset)`` of every conv that reads the
      channels, at input channels ``offset .. offset + C_out - 1``.
  """
  producer: str
  vectors: tuple[str, ...]
  stats: tuple[str, ...]
  consumers: tuple[tuple[str, int], ...]


def filter_scores(params: PyTree, masks: PyTree, layer: str) -> jax.Array:
  """L1 norm of each output filter of ``layer`` ([C_out]); filters the
  masks have pruned score -1."""
  w = _get(params, layer)['kernel']
  alive = jnp.any(_get(masks, layer)['kernel'], axis=(0, 1, 2))
  return jnp.where(alive, jnp.sum(jnp.abs(w), axis=(0, 1, 2)), -1.0)


def channel_masks(params: PyTree, groups: Sequence[Group],
                  keep: dict[str, jax.Array]) -> PyTree:
  """The masks that drop the channels ``keep[producer]`` marks False.

  ``keep`` maps some groups' producers to [C_out] booleans; producer
  kernels, their vectors and their consumers' input channels follow.
  """
  masks = ones_like(params)
  for g in groups:
    if g.producer not in keep:
      continue
    k = keep[g.producer]
    path = f'{g.producer}/kernel'
    masks = _set(masks, path, _get(masks, path) & k)
    for v in g.vectors:
      masks = _set(masks, v, _get(masks, v) & k)
    for layer, off in g.consumers:
      path = f'{layer}/kernel'
      m = _get(masks, path)
      rows = jnp.ones(m.shape[2], bool).at[off:off + k.size].set(k)
      masks = _set(masks, path, m & rows[None, None, :, None])
  return masks


def filter_masks(params: PyTree, sparsity, groups: Sequence[Group],
                 layers: Sequence[str], *, prev: PyTree = None) -> PyTree:
  """Filter masks: the lowest-L1 output channels of each of ``layers``.

  Each layer keeps at least one channel. ``layers`` must be producers of
  ``groups`` (a layer whose output is the image has no group).

  Args:
    params: the network's params.
    sparsity: fraction of each layer's filters to prune; may be traced.
    groups: the network's channel groups (``gcjax.channels.groups``).
    layers: producers to prune.
    prev: the current masks; channels they prune stay pruned.

  Returns:
    Boolean masks like ``params``.
  """
  _check_sparsity(sparsity)
  producers = {g.producer for g in groups}
  bad = [n for n in layers if n not in producers]
  if bad:
    raise errors.UserError(
        f'config.prune.layers: {bad} have no prunable output channels '
        f'(filter pruning); choose among {sorted(producers)}')
  prev = ones_like(params) if prev is None else prev
  keep = {}
  for name in layers:
    s = filter_scores(params, prev, name)
    keep[name] = _keep_top(s, n_pruned(sparsity, s.size, keep_min=1))
  return channel_masks(params, groups, keep)


def kept_channels(masks: PyTree, group: Group):
  """[C_out] booleans: the channels of ``group`` its masks keep."""
  return jnp.any(_get(masks, group.producer)['kernel'], axis=(0, 1, 2))


# -- reports ----------------------------------------------------------------

def layer_sparsity(masks: PyTree, layers: Sequence[str]
                   ) -> dict[str, jax.Array]:
  """Fraction of pruned kernel weights of each layer, and of all of them
  together (``'all'``)."""
  out, zeros, total = {}, 0, 0
  for name in layers:
    m = _get(masks, name)['kernel']
    z = jnp.sum(~m)
    out[name] = z / m.size
    zeros, total = zeros + z, total + m.size
  out['all'] = zeros / max(total, 1)
  return out


# -- schedules ----------------------------------------------------------------

class Schedule(NamedTuple):
  """A sparsity schedule.

  Attributes:
    kind: 'oneshot' (``final`` from step 0) or 'agp'.
    final: the target sparsity s_f.
    start, end: AGP's window in steps (s_i before, s_f from ``end`` on).
    every: AGP recomputes the mask every this many steps in the window
      (and at ``end``).
    initial: AGP's s_i.
  """
  kind: str = 'oneshot'
  final: float = 0.5
  start: int = 0
  end: int = 1000
  every: int = 100
  initial: float = 0.0


def check_schedule(s: Schedule) -> Schedule:
  """Raises UserError on an unknown kind or a bad window."""
  if s.kind not in SCHEDULES:
    raise errors.UserError(f'config.prune.schedule={s.kind!r}; expected one '
                           f'of {SCHEDULES}')
  _check_sparsity(s.final)
  if s.kind == 'agp' and not (0 <= s.start < s.end and s.every >= 1):
    raise errors.UserError(
        f'config.prune: AGP needs 0 <= start < end and every >= 1; got '
        f'start={s.start}, end={s.end}, every={s.every}')
  return s


def target(s: Schedule, step) -> jax.Array:
  """The sparsity the schedule asks for at ``step`` (float32)."""
  if s.kind == 'oneshot':
    return jnp.asarray(s.final, jnp.float32)
  p = jnp.clip((jnp.asarray(step, jnp.float32) - s.start)
               / (s.end - s.start), 0.0, 1.0)
  return (s.initial + (s.final - s.initial) * (1.0 - (1.0 - p) ** 3)
          ).astype(jnp.float32)


def update_now(s: Schedule, step) -> jax.Array:
  """Whether the mask is recomputed at ``step`` (a bool array); one-shot
  masks are made once, at initialisation."""
  if s.kind == 'oneshot':
    return jnp.asarray(False)
  step = jnp.asarray(step)
  inside = (step >= s.start) & (step <= s.end)
  return inside & (((step - s.start) % s.every == 0) | (step == s.end))

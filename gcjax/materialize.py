"""Filter-pruned networks -> genuinely smaller dense networks.

Which layer reads which channels (:func:`groups`) is known for gcjax's
DCGAN generator and its U-Net; :func:`materialize` gathers the kept output
channels of every producer (kernel, bias, norm scale/shift, running
statistics) and the matching input channels of its consumers, and rebuilds
the module with the new widths (``DCGANGenerator.widths``,
``UNetGenerator.widths``/``up_widths``), so the result computes the masked
network's outputs with fewer parameters and MACs.

Transposed convs (``layers.ConvTranspose``, run as sub-pixel convs) keep
the kernel layout ``[k, k, C_in, C_out]`` of ``nn.ConvTranspose``: output
channels are the last axis, as for ordinary convs, and slicing channels
leaves the sub-pixel phase taps (spatial axes) untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gcjax import errors
from gcjax.models import dcgan, unet
from gcjax.pruning import Group

PyTree = Any


def _has(flat: dict, path: str) -> bool:
  return path in flat


def _vectors(flat: dict, conv: str, norm: str | None):
  out = [f'{conv}/bias'] if _has(flat, f'{conv}/bias') else []
  if norm is not None:
    out += [f'{norm}/{k}' for k in ('scale', 'bias')
            if _has(flat, f'{norm}/{k}')]
  return tuple(out)


def _stats(norm: str | None, batch_stats) -> tuple[str, ...]:
  if norm is None or not batch_stats or norm not in batch_stats:
    return ()
  return (f'{norm}/mean', f'{norm}/var')


def _dcgan_groups(module: dcgan.DCGANGenerator, params, batch_stats):
  flat = traverse_util.flatten_dict(params, sep='/')
  n = len(dcgan.generator_widths(module.d, module.resolution)[1])
  norm = (lambda i: f'norm{i}') if module.norm == 'batch' else (
      lambda i: None)
  return tuple(
      Group(producer=f'conv{i}', vectors=_vectors(flat, f'conv{i}', norm(i)),
            stats=_stats(norm(i), batch_stats),
            consumers=((f'conv{i + 1}', 0),))
      for i in range(n))


def _unet_groups(module: unet.UNetGenerator, params, batch_stats):
  if module.n_res:
    raise errors.UserError(
        'filter pruning of a U-Net with residual blocks (n_res='
        f'{module.n_res}) is not supported: use prune.kind=fine')
  if module.norm not in ('batch', 'instance', 'none'):
    raise errors.UserError(f'filter pruning: U-Net norm {module.norm!r}')
  flat = traverse_util.flatten_dict(params, sep='/')
  n = sum(1 for k in flat if k.startswith('down') and
          k.endswith('_conv/kernel'))
  enc = [flat[f'down{i}_conv/kernel'].shape[-1] for i in range(n)]
  norm_ok = module.norm != 'none'
  out = []
  for i in range(n):
    norm = f'down{i}_norm' if norm_ok and 0 < i < n - 1 else None
    cons = ((f'down{i + 1}_conv', 0),) if i < n - 1 else ()
    # Level i's encoder output is the skip its decoder concatenates first
    # (the innermost one feeds the innermost decoder directly).
    cons += ((f'up{i}_conv', 0),)
    out.append(Group(f'down{i}_conv', _vectors(flat, f'down{i}_conv', norm),
                     _stats(norm, batch_stats), cons))
  for i in range(1, n):
    norm = f'up{i}_norm' if norm_ok else None
    out.append(Group(f'up{i}_conv', _vectors(flat, f'up{i}_conv', norm),
                     _stats(norm, batch_stats),
                     ((f'up{i - 1}_conv', enc[i - 1]),)))
  return tuple(out)


def groups(module, variables) -> tuple[Group, ...]:
  """The channel groups of a network (who reads each conv's channels).

  Raises:
    errors.UserError: for a network filter pruning does not know.
  """
  params, bs = variables['params'], variables.get('batch_stats')
  if isinstance(module, dcgan.DCGANGenerator):
    return _dcgan_groups(module, params, bs)
  if isinstance(module, unet.UNetGenerator):
    return _unet_groups(module, params, bs)
  raise errors.UserError(
      f'filter pruning knows DCGANGenerator and UNetGenerator, not '
      f'{type(module).__name__}: use prune.kind=fine')


def _keep_indices(masks_flat, grps):
  """{producer: kept output channel indices} and {consumer: kept input
  indices}, checking that the masks are filter-structured."""
  out_keep, in_keep = {}, {}
  for g in grps:
    m = np.asarray(masks_flat[f'{g.producer}/kernel'])
    out_keep[g.producer] = np.flatnonzero(m.any(axis=(0, 1, 2)))
  for g in grps:
    keep = np.zeros(masks_flat[f'{g.producer}/kernel'].shape[-1], bool)
    keep[out_keep[g.producer]] = True
    for layer, off in g.consumers:
      c_in = masks_flat[f'{layer}/kernel'].shape[2]
      rows = in_keep.setdefault(layer, np.ones(c_in, bool))
      rows[off:off + keep.size] &= keep
  for path, m in masks_flat.items():
    m = np.asarray(m)
    layer = path[:-len('/kernel')]
    if not path.endswith('/kernel') or m.ndim != 4:
      continue
    cols = np.zeros(m.shape[-1], bool)
    cols[out_keep.get(layer, np.arange(m.shape[-1]))] = True
    rows = in_keep.get(layer, np.ones(m.shape[2], bool))
    want = rows[None, None, :, None] & cols[None, None, None, :]
    if not np.array_equal(m, np.broadcast_to(want, m.shape)):
      raise errors.UserError(
          f'cannot materialize: the mask of {layer} prunes single weights, '
          'not whole filters (fine-grained sparsity). A dense kernel with '
          'zeros runs no faster; its saving is the theoretical count of '
          'MACs with nonzero weights (cost: macs_nonzero)')
  return out_keep, {k: np.flatnonzero(v) for k, v in in_keep.items()}


def materialize(module, variables: PyTree, masks: PyTree):
  """(smaller module, its variables) computing the filter-masked network.

  Args:
    module: a DCGANGenerator or UNetGenerator.
    variables: its variables (``params`` [+ ``batch_stats``]); masked
      weights may hold any value (they are dropped).
    masks: filter masks over ``variables['params']`` (``pruning.
      filter_masks``).

  Returns:
    ``(module with the kept widths, variables)``: same outputs as
    ``module.apply({'params': apply_masks(params, masks), ...})``.

  Raises:
    errors.UserError: fine-grained masks, or a network it does not know.
  """
  grps = groups(module, variables)
  masks_flat = traverse_util.flatten_dict(masks, sep='/')
  out_keep, in_keep = _keep_indices(masks_flat, grps)
  flat = {c: traverse_util.flatten_dict(v, sep='/')
          for c, v in variables.items()}
  for g in grps:
    idx = out_keep[g.producer]
    kpath = f'{g.producer}/kernel'
    flat['params'][kpath] = flat['params'][kpath][..., idx]
    for v in g.vectors:
      flat['params'][v] = flat['params'][v][idx]
    for s in g.stats:
      flat['batch_stats'][s] = flat['batch_stats'][s][idx]
  for layer, idx in in_keep.items():
    kpath = f'{layer}/kernel'
    flat['params'][kpath] = flat['params'][kpath][:, :, idx, :]
  new_vars = {c: traverse_util.unflatten_dict(v, sep='/')
              for c, v in flat.items()}
  width = {p: int(i.size) for p, i in out_keep.items()}
  if isinstance(module, dcgan.DCGANGenerator):
    new = dataclasses.replace(
        module, widths=tuple(width[f'conv{i}'] for i in range(len(grps))))
  else:
    n = sum(1 for g in grps if g.producer.startswith('down'))
    new = dataclasses.replace(
        module, widths=tuple(width[f'down{i}_conv'] for i in range(n)),
        up_widths=tuple(width[f'up{i}_conv'] for i in range(1, n)))
  return new, jax.tree.map(jnp.asarray, new_vars)


def scaled(module, keep_fraction: float, layers) -> Any:
  """``module`` with the widths of ``layers`` (producers) scaled by
  ``keep_fraction`` (rounded, at least 1): the smaller dense network of the
  same size as a filter-pruned one (the from-scratch baseline)."""
  def w(c):
    return max(1, int(round(keep_fraction * c)))
  if isinstance(module, dcgan.DCGANGenerator):
    _, base = dcgan.generator_widths(module.d, module.resolution)
    base = module.widths or base
    return dataclasses.replace(module, widths=tuple(
        w(c) if f'conv{i}' in layers else c for i, c in enumerate(base)))
  if isinstance(module, unet.UNetGenerator):
    raise errors.UserError('the from-scratch baseline (prune.recipe='
                           "'scratch') is built for the DCGAN task only")
  raise errors.UserError(f'no smaller dense {type(module).__name__}')

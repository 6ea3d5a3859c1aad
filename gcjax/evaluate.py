"""Evaluators: stream the test split through the method's predict functions.

``evaluate(evals, method, state, frozen, predict, test_arrays, mesh, batch)``
returns ``{model_name: {metric: value}}``. Evaluator kinds (``type``):

* ``image``: L1 / PSNR / SSIM against the target images, and the same
  ``agree_*`` figures against the method's reference model (the teacher).
* ``fid``: FID and KID (Inception pool3, ``gcjax.metrics.fid``) against the
  real test images (``against='target'``), the reference model's outputs
  (``'reference'``) or saved statistics (``stats_path``); ``repeats`` > 1
  reports mean and std over sample draws (different latents / subsets).
* ``lpips``: LPIPS to the target and to the reference.
* ``cost``: parameters, MACs (true and literature convention), XLA flops,
  latency at batch 1 and a larger batch.
* ``is``: the Fashion-MNIST domain Inception Score (gcjax's own classifier).

No files are written here; ``train.py`` writes what this returns.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import numpy as np

from gcjax import sharding
from gcjax.data import pipeline


def _iter_eval(method, state, frozen, predict, arrays, mesh, batch_size: int,
               limit: int, seed: int):
  """Yields (batch, preds) numpy dicts over the test arrays (valid rows)."""
  n = len(next(iter(arrays.values())))
  if limit and limit > 0:
    n = min(n, limit)
  arrays = {k: v[:n] for k, v in arrays.items()}
  for i, (batch, mask) in enumerate(
      pipeline.eval_batches(arrays, batch_size)):
    valid = int(mask.sum())
    if method.latent_dim:
      key = jax.random.fold_in(jax.random.key(seed), i)
      batch['z'] = np.asarray(
          jax.random.normal(key, (batch_size, method.latent_dim)))
    gb = sharding.global_from_host(batch, mesh)
    preds = {k: np.asarray(jax.device_get(fn(state, gb, frozen)))[:valid]
             for k, fn in predict.items()}
    yield {k: v[:valid] for k, v in batch.items()}, preds


def _image_eval(method, stream):
  from gcjax.metrics import image
  sums: dict[str, dict[str, float]] = {}
  count = 0
  ref = method.reference
  for batch, preds in stream:
    count += len(next(iter(preds.values())))
    for name, out in preds.items():
      s = sums.setdefault(name, {})
      pairs = []
      # Unconditional samples have no per-row target: only agree_* applies.
      if (method.target_key and method.target_key in batch and
          not method.latent_dim):
        pairs.append(('', batch[method.target_key]))
      if ref and name != ref and ref in preds:
        pairs.append(('agree_', preds[ref]))
      for pre, tgt in pairs:
        s[pre + 'l1'] = s.get(pre + 'l1', 0) + float(
            np.abs(out - tgt).mean(axis=(1, 2, 3)).sum())
        s[pre + 'psnr'] = s.get(pre + 'psnr', 0) + float(
            np.sum(image.psnr(out, tgt)))
        s[pre + 'ssim'] = s.get(pre + 'ssim', 0) + float(
            np.sum(image.ssim(out, tgt)))
  return {name: {k: v / count for k, v in s.items()}
          for name, s in sums.items()}


def kid_entry(feats: np.ndarray, real_feats: np.ndarray, n_subsets: int,
              subset_size: int) -> dict[str, float]:
  """``{'kid', 'kid_std'}`` with subsets capped at the smaller set.

  When a subset holds every row of both sets all subsets are the same, so
  one is computed and ``kid_std`` is left out (a spread of 0 would read as
  a confidence it is not).
  """
  from gcjax.metrics import fid
  size = min(subset_size, len(feats), len(real_feats))
  everything = size == len(feats) == len(real_feats)
  km, ks = fid.kid(feats, real_feats, n_subsets=1 if everything else
                   n_subsets, subset_size=size)
  return {'kid': float(km)} if everything else {'kid': float(km),
                                                'kid_std': float(ks)}


def _fid_eval(method, stream, *, against='target', stats_path='',
              kid_subsets=10, kid_subset_size=1000, batch_size=32):
  from gcjax import metric_weights
  from gcjax.metrics import fid
  fn = fid.inception_fn(metric_weights.load_inception_params())
  batch_size = fid.device_multiple(batch_size)
  # Stream: only features are kept, never the images.
  stats: dict[str, fid.FeatureStats] = {}
  reals = fid.FeatureStats(reservoir_size=None)

  def features(x):
    return np.concatenate(list(fid.extract_features(fn, [x], batch_size)))

  for batch, preds in stream:
    for name, out in preds.items():
      stats.setdefault(name, fid.FeatureStats(reservoir_size=None)).update(
          features(out))
    if against == 'target' and not stats_path:
      reals.update(features(batch[method.target_key]))
  real = None
  if stats_path:
    real = fid.load_stats(stats_path)
  elif against == 'target':
    real = reals
  elif against != 'reference':
    raise ValueError(f"evals fid: against={against!r}; expected 'target', "
                     "'reference' or a stats_path")
  res = {}
  for name, s in stats.items():
    if against == 'reference':
      if name == method.reference:
        continue
      real = stats[method.reference]
    r = {'fid': fid.fid(s, real)}
    if real.feats is not None:
      r.update(kid_entry(s.feats, real.feats, kid_subsets, kid_subset_size))
    suffix = '' if against == 'target' else f'_vs_{against}'
    res[name] = {k + suffix: v for k, v in r.items()}
  return res


def _lpips_eval(method, stream, *, net='alex'):
  from gcjax import metric_weights
  from gcjax.metrics import lpips
  apply_fn, variables = lpips.distance_fn(net), metric_weights.load_lpips(net)
  fn = jax.jit(lambda a, b: apply_fn(variables, a, b))
  sums: dict[str, dict[str, float]] = {}
  count = 0
  ref = method.reference
  for batch, preds in stream:
    count += len(next(iter(preds.values())))
    for name, out in preds.items():
      s = sums.setdefault(name, {})
      if method.target_key and method.target_key in batch:
        s['lpips'] = s.get('lpips', 0) + float(
            np.sum(fn(out, batch[method.target_key])))
      if ref and name != ref and ref in preds:
        s['agree_lpips'] = s.get('agree_lpips', 0) + float(
            np.sum(fn(out, preds[ref])))
  return {n: {k: v / count for k, v in s.items()} for n, s in sums.items()}


def _is_eval(method, stream, *, splits=10):
  from gcjax import metric_weights
  from gcjax.metrics import classifier
  logits_fn = classifier.classifier_logits_fn(
      metric_weights.load_fashion_classifier().variables)
  outs: dict[str, list[np.ndarray]] = {}
  for _, preds in stream:
    for name, out in preds.items():
      outs.setdefault(name, []).append(out)
  res = {}
  for name, chunks in outs.items():
    m, s = classifier.inception_score(logits_fn, np.concatenate(chunks),
                                      splits=splits)
    res[name] = {'domain_is': float(m), 'domain_is_std': float(s)}
  return res


def _cost_eval(method, state, frozen, *, latency_batch=8,
               latency_iters=10):
  from gcjax.metrics import cost
  res = {}
  for name, cm in method.cost_models.items():
    variables = jax.device_get(cm.variables(state, frozen))
    x1 = np.zeros((1, *cm.input_shape), cm.input_dtype)
    fwd = lambda v, x, cm=cm: cm.fwd(v, x)
    macs = cost.count_macs(fwd, variables, x1)
    r = {'params': cost.count_params(variables),
         'macs_true': macs['true'], 'macs_literature': macs['literature'],
         'flops_xla': cost.xla_flops(fwd, variables, x1)}
    jf = jax.jit(fwd)
    for b in (1, latency_batch):
      xb = np.zeros((b, *cm.input_shape), cm.input_dtype)
      lat = cost.measure_latency(jf, (variables, xb), n_iters=latency_iters)
      r[f'latency_ms_b{b}'] = 1e3 * lat['median_s']
    res[name] = r
  return res


def _laplacian_eval(method, stream):
  """Mean variance of the Laplacian (sharpness, ``metrics.image``).

  One value per model; the target images, when the batches carry them, are
  reported as model ``'real'`` (the sharpness the data has).
  """
  from gcjax.metrics import image
  sums: dict[str, float] = {}
  counts: dict[str, int] = {}
  for batch, preds in stream:
    outs = dict(preds)
    if method.target_key and method.target_key in batch:
      outs['real'] = batch[method.target_key]
    for name, x in outs.items():
      sums[name] = sums.get(name, 0.0) + float(
          np.sum(image.laplacian_variance(x)))
      counts[name] = counts.get(name, 0) + len(x)
  return {n: {'laplacian_var': sums[n] / counts[n]} for n in sums}


_STREAMING = {'image': _image_eval, 'fid': _fid_eval, 'lpips': _lpips_eval,
              'is': _is_eval, 'laplacian': _laplacian_eval}


def evaluate(evals, method, state, frozen, predict, test_arrays, mesh,
             batch_size: int) -> dict[str, dict[str, Any]]:
  """Runs each configured evaluator; merges their per-model results."""
  results: dict[str, dict[str, Any]] = {}
  for name, ev in evals.items():
    ev = dict(ev)
    kind = ev.pop('type')
    ev.pop('every_steps', None)
    repeats = int(ev.pop('repeats', 1))
    limit = int(ev.pop('limit', 0))
    fn = _cost_eval if kind == 'cost' else _STREAMING.get(kind)
    if fn is not None:
      allowed = set(inspect.signature(fn).parameters) - {
          'method', 'stream', 'state', 'frozen'}
      unknown = sorted(set(ev) - allowed)
      if unknown:
        raise ValueError(f'config.evals.{name}: unknown keys {unknown} for '
                         f'type {kind!r}; allowed: {sorted(allowed)}')
    if kind == 'cost':
      out = _cost_eval(method, state, frozen, **ev)
    elif kind in _STREAMING:
      runs = []
      for r in range(repeats):
        stream = _iter_eval(method, state, frozen, predict, test_arrays, mesh,
                            batch_size, limit, seed=1000 + r)
        runs.append(_STREAMING[kind](method, stream, **ev))
      out = _mean_std(runs) if repeats > 1 else runs[0]
    else:
      raise ValueError(
          f'config.evals.{name}.type={kind!r}; expected one of '
          f'cost, {", ".join(_STREAMING)}')
    for model, vals in out.items():
      results.setdefault(model, {}).update(vals)
  return results


def _mean_std(runs):
  out = {}
  for model in runs[0]:
    out[model] = {}
    for k in runs[0][model]:
      vals = np.array([r[model][k] for r in runs])
      out[model][k] = float(vals.mean())
      out[model][k + '_std'] = float(vals.std(ddof=1))
  return out


def flatten(results) -> dict[str, float]:
  return {f'eval/{m}/{k}': v for m, vals in results.items()
          if not m.startswith('_') for k, v in vals.items()
          if isinstance(v, (int, float))}


def _si(v: float) -> str:
  """1234567 -> '1.235M' (G/M/k units)."""
  for unit, scale in (('G', 1e9), ('M', 1e6), ('k', 1e3)):
    if abs(v) >= scale:
      return f'{v / scale:.3f}{unit}'
  return f'{v:.0f}'


_COLUMNS = [
    ('params', 'params', _si),
    ('macs_literature', 'MACs (lit.)', _si),
    ('macs_true', 'MACs (true)', _si),
    ('flops_xla', 'XLA flops/2', lambda v: _si(v / 2)),
]


def to_markdown(results, title: str) -> str:
  """The results table: one row per model, cost columns first."""
  models = [m for m in results if not m.startswith('_')]
  keys = []
  for m in models:
    for k in results[m]:
      if k not in keys:
        keys.append(k)
  fixed = [c for c in _COLUMNS if c[0] in keys]
  rest = [k for k in keys if k not in {c[0] for c in _COLUMNS}]
  head = ['model'] + [c[1] for c in fixed] + rest
  lines = [f'# {title}', '', '| ' + ' | '.join(head) + ' |',
           '|' + '---|' * len(head)]
  for m in models:
    row = [m]
    for key, _, fmt in fixed:
      v = results[m].get(key)
      row.append(fmt(v) if v is not None else '')
    for k in rest:
      v = results[m].get(k)
      row.append('' if v is None else (f'{v:.4g}' if isinstance(v, float)
                                       else str(v)))
    lines.append('| ' + ' | '.join(row) + ' |')
  run = results.get('_run')
  if run:
    lines += ['', 'MACs (lit.): the torchprofile convention used by the '
              'papers (a stride-2 transposed conv charged per output '
              'element). MACs (true): multiply-adds actually needed. '
              'XLA flops/2: XLA\'s cost analysis, which skips the taps '
              'that fall on zero padding (well under the MAC counts on '
              'small feature maps: 25% of them for a 4x4 stride-2 conv on '
              'a 2x2 map, 97% on 64x64). Latency: median of timed calls after warm-up on '
              f"{run.get('platform')}.", '',
              '```', *(f'{k}: {v}' for k, v in run.items()
                       if k != 'last_losses'), '```']
  return '\n'.join(lines) + '\n'

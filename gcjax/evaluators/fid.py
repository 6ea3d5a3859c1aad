"""``fid``: FID and KID (TF FID Inception-v3, pool3) of each prediction.

``target`` (one) is what the predictions are compared against:

* a batch key (``'tgt'``, ``'img'``): the real test images; the trainer
  points ``stats_path`` at cached statistics of them (``gcjax.stats``), so
  later runs skip their Inception pass. Keys ``fid``, ``kid``;
* ``'stats:<path>'``: saved statistics (``python -m gcjax.stats``); ``fid``,
  and ``kid`` when the file keeps the features;
* another predict (``'teacher'``): its outputs on the same inputs; keys
  ``fid_vs_<target>``, ``kid_vs_<target>``.

``kid_subset_size`` is capped at the smaller set; when a subset holds
every row of both sets one KID is computed and ``kid_std`` is left out.
"""

from __future__ import annotations

import numpy as np

from gcjax import errors
from gcjax.evaluators import common


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


class Evaluator:

  def __init__(self, names: common.Names, *, pred=(), target='tgt',
               stats_path: str = '', kid_subsets: int = 10,
               kid_subset_size: int = 1000, batch_size: int = 32,
               limit: int = 0):
    self.names = names
    self.pred = common.check_pred(pred, names)
    target = common.check_target(target, names, stats=True)
    if len(target) != 1:
      raise errors.UserError(f'fid compares against one target, got '
                             f'{list(target)}')
    self.target = target[0]
    if self.target.startswith(common.STATS_PREFIX):
      stats_path = self.target[len(common.STATS_PREFIX):]
    self.stats_path = stats_path
    self.kid_subsets = kid_subsets
    self.kid_subset_size = kid_subset_size
    self.batch_size = batch_size
    self.limit = limit

  def run(self, ctx: common.Context, seed: int):
    from gcjax import metric_weights
    from gcjax.metrics import fid
    fn = fid.inception_fn(metric_weights.load_inception_params())
    batch_size = fid.device_multiple(self.batch_size)
    against_pred = self.target in self.names.predict
    real_batches = not self.stats_path and not against_pred

    def features(x):
      return np.concatenate(list(fid.extract_features(fn, [x], batch_size)))

    # Stream: only features are kept (every row, for KID), never images.
    stats: dict[str, fid.FeatureStats] = {}
    reals = fid.FeatureStats(reservoir_size=None)
    preds_needed = common.needed(self.pred, (self.target,), self.names)
    for batch, preds in ctx.stream(preds_needed, self.limit, seed):
      for name, out in preds.items():
        stats.setdefault(name, fid.FeatureStats(reservoir_size=None)).update(
            features(out))
      if real_batches:
        reals.update(features(batch[self.target]))
    if self.stats_path:
      real = fid.load_stats(self.stats_path)
    else:
      real = stats[self.target] if against_pred else reals
    suffix = f'_vs_{self.target}' if against_pred else ''
    res = {}
    for name in self.pred:
      if name == self.target:
        continue
      s = stats[name]
      r = {'fid': fid.fid(s, real)}
      if real.feats is not None:
        r.update(kid_entry(s.feats, real.feats, self.kid_subsets,
                           self.kid_subset_size))
      res[name] = {k + suffix: v for k, v in r.items()}
    return res

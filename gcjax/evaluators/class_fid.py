"""``class_fid``: mean per-class FID and KID (mFID, mKID) of conditional
generators.

Each prediction row is generated for the class in the batch key
``pred_label`` (e.g. ``'tgt_label'``, added by the method's
``eval_inputs``); the real images are the batch key ``target`` with their
classes in ``label``. For every class present in both, FID and KID
(TF FID Inception-v3, pool3) compare that class's generated rows with
that class's real rows; ``mfid`` and ``mkid`` average over the classes
(KDIT, Table 1). With few rows per class (``limit`` / 10 on Fashion-MNIST)
FID is biased high: compare runs only at the same ``limit``.
"""

from __future__ import annotations

import numpy as np

from gcjax import errors
from gcjax.evaluators import common
from gcjax.evaluators.fid import kid_entry


class Evaluator:

  def __init__(self, names: common.Names, *, pred=(), target='img',
               label='label', pred_label='tgt_label', batch_size: int = 32,
               limit: int = 0, kid_subsets: int = 10,
               kid_subset_size: int = 100):
    self.pred = common.check_pred(pred, names)
    common.check_batch_keys(names, target=target, label=label,
                            pred_label=pred_label)
    self.target, self.label, self.pred_label = target, label, pred_label
    self.batch_size = batch_size
    self.limit = limit
    self.kid_subsets = kid_subsets
    self.kid_subset_size = kid_subset_size

  def run(self, ctx: common.Context, seed: int):
    from gcjax import metric_weights
    from gcjax.metrics import fid
    fn = fid.inception_fn(metric_weights.load_inception_params())
    batch_size = fid.device_multiple(self.batch_size)

    def features(x):
      return np.concatenate(list(fid.extract_features(fn, [x], batch_size)))

    rows = common.labelled_rows(ctx, self.pred, self.limit, seed,
                                target=self.target, label=self.label,
                                pred_label=self.pred_label,
                                transform=features)
    res = {}
    for name, (f, y) in rows.fake.items():
      res[name] = per_class(f, y, rows.real, rows.real_label,
                            self.kid_subsets, self.kid_subset_size)
    return res


def per_class(fake: np.ndarray, fake_y: np.ndarray, real: np.ndarray,
              real_y: np.ndarray, kid_subsets: int,
              kid_subset_size: int) -> dict[str, float]:
  """``{'mfid', 'mkid', 'classes'}`` over the classes with at least two
  rows on both sides."""
  from gcjax.metrics import fid
  fids, kids = [], []
  for c in np.unique(real_y):
    a, b = fake[fake_y == c], real[real_y == c]
    if len(a) < 2 or len(b) < 2:
      continue
    sa = fid.FeatureStats(dim=a.shape[1])
    sb = fid.FeatureStats(dim=b.shape[1])
    sa.update(a)
    sb.update(b)
    fids.append(fid.fid(sa, sb))
    kids.append(kid_entry(a, b, kid_subsets, kid_subset_size)['kid'])
  if not fids:
    raise errors.UserError('class_fid: no class has two generated and two '
                           'real rows; raise the evaluator limit')
  return {'mfid': float(np.mean(fids)), 'mkid': float(np.mean(kids)),
          'classes': float(len(fids))}

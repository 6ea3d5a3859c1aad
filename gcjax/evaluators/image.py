"""``image``: L1 / PSNR / SSIM of each prediction against each target.

Against a batch key (the data, e.g. ``'tgt'``, or ``'src'`` for
reconstructions) the metrics are ``l1``, ``psnr``, ``ssim``; against
another predict (e.g. ``'teacher'``) ``agree_l1``, ``agree_psnr``,
``agree_ssim``. Per-row values averaged over the (first ``limit``) rows.
"""

from __future__ import annotations

import numpy as np

from gcjax.evaluators import common
from gcjax.metrics import image


class Evaluator:

  def __init__(self, names: common.Names, *, pred=(), target=('tgt',),
               limit: int = 0):
    self.names = names
    self.pred = common.check_pred(pred, names)
    self.target = common.check_target(target, names)
    self.limit = limit

  def run(self, ctx: common.Context, seed: int):
    sums = common.Sums()
    pairs = common.paired(self.pred, self.target, self.names)
    for batch, preds in ctx.stream(
        common.needed(self.pred, self.target, self.names), self.limit, seed):
      sums.count += len(next(iter(preds.values())))
      for p, t, pre in pairs:
        out, tgt = preds[p], (batch[t] if t in batch else preds[t])
        sums.add(p, pre + 'l1', np.abs(out - tgt).mean(axis=(1, 2, 3)))
        sums.add(p, pre + 'psnr', image.psnr(out, tgt))
        sums.add(p, pre + 'ssim', image.ssim(out, tgt))
    return sums.means()

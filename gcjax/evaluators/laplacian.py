"""``laplacian``: mean variance of the Laplacian (sharpness).

One value per prediction; each batch-key target (the real images) is
reported too, as model ``'real'`` (the sharpness the data has; the key's
name when there are several).
"""

from __future__ import annotations

from gcjax.evaluators import common
from gcjax.metrics import image


class Evaluator:

  def __init__(self, names: common.Names, *, pred=(), target=(),
               limit: int = 0):
    self.pred = common.check_pred(pred, names)
    self.target = common.check_target(target, names)
    self.limit = limit

  def run(self, ctx: common.Context, seed: int):
    sums = common.Sums()
    for batch, preds in ctx.stream(self.pred, self.limit, seed):
      outs = dict(preds)
      for t in self.target:
        name = 'real' if len(self.target) == 1 else t
        outs[name] = batch[t] if t in batch else preds[t]
      sums.count += len(next(iter(outs.values())))
      for name, x in outs.items():
        sums.add(name, 'laplacian_var', image.laplacian_variance(x))
    return sums.means()

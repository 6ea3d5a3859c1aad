"""``lpips``: LPIPS (AlexNet or VGG16 trunk) of each prediction against each
target: ``lpips`` against the data, ``agree_lpips`` against a predict."""

from __future__ import annotations

import jax

from gcjax.evaluators import common


class Evaluator:

  def __init__(self, names: common.Names, *, pred=(),
               target=('tgt', 'teacher'), net: str = 'alex', limit: int = 0):
    self.names = names
    self.pred = common.check_pred(pred, names)
    self.target = common.check_target(target, names)
    self.net = net
    self.limit = limit

  def run(self, ctx: common.Context, seed: int):
    from gcjax import metric_weights
    from gcjax.metrics import lpips
    apply_fn = lpips.distance_fn(self.net)
    variables = metric_weights.load_lpips(self.net)
    fn = jax.jit(lambda a, b: apply_fn(variables, a, b))
    sums = common.Sums()
    pairs = common.paired(self.pred, self.target, self.names)
    for batch, preds in ctx.stream(
        common.needed(self.pred, self.target, self.names), self.limit, seed):
      sums.count += len(next(iter(preds.values())))
      for p, t, pre in pairs:
        tgt = batch[t] if t in batch else preds[t]
        sums.add(p, pre + 'lpips', fn(preds[p], tgt))
    return sums.means()

"""``is``: the Fashion-MNIST domain Inception Score of each prediction, from
gcjax's own small classifier (not comparable with the ImageNet IS)."""

from __future__ import annotations

import numpy as np

from gcjax.evaluators import common


class Evaluator:

  def __init__(self, names: common.Names, *, pred=(), splits: int = 10,
               limit: int = 0):
    self.pred = common.check_pred(pred, names)
    self.splits = splits
    self.limit = limit

  def run(self, ctx: common.Context, seed: int):
    from gcjax import metric_weights
    from gcjax.metrics import classifier
    logits_fn = classifier.classifier_logits_fn(
        metric_weights.load_fashion_classifier().variables)
    outs: dict[str, list[np.ndarray]] = {}
    for _, preds in ctx.stream(self.pred, self.limit, seed):
      for name, out in preds.items():
        outs.setdefault(name, []).append(out)
    res = {}
    for name, chunks in outs.items():
      m, s = classifier.inception_score(logits_fn, np.concatenate(chunks),
                                        splits=self.splits)
      res[name] = {'domain_is': float(m), 'domain_is_std': float(s)}
    return res

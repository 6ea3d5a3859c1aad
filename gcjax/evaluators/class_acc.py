"""``class_acc``: RC and FC (Shmelkov et al. 2018) of class-conditional
generators on Fashion-MNIST, with gcjax's Fashion classifier.

* ``rc``: the shipped classifier (trained on real images,
  ``metric_weights.load_fashion_classifier``) classifies the generated
  rows; accuracy against the class each row was generated for
  (``pred_label``).
* ``fc``: a fresh ``FashionCNN`` is trained on the generated rows and their
  classes (``fc_steps`` Adam steps, ``make_classifier.train_classifier``)
  and tested on the real rows (``target``, classes in ``label``).

Both in percent. Only meaningful for Fashion-MNIST-like 10-class data.
"""

from __future__ import annotations

import jax
import numpy as np

from gcjax.evaluators import common


def to_uint8_28(images: np.ndarray) -> np.ndarray:
  """[B, H, W, 1|3] in [-1, 1] -> [B, 28, 28] uint8 (the classifier's)."""
  from gcjax.metrics import classifier
  x = np.asarray(classifier.to_classifier_input(images))[..., 0]
  return np.round(np.clip((x + 1.0) * 127.5, 0, 255)).astype(np.uint8)


def accuracy(logits_fn, images: np.ndarray, labels: np.ndarray) -> float:
  """Percent of rows whose argmax logit is their label."""
  from gcjax.metrics import classifier
  logits = jax.jit(lambda x: logits_fn(classifier.to_classifier_input(x)))(
      images)
  return 100.0 * float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


class Evaluator:

  def __init__(self, names: common.Names, *, pred=(), target='img',
               label='label', pred_label='tgt_label', limit: int = 0,
               fc_steps: int = 300, fc_seed: int = 0):
    self.pred = common.check_pred(pred, names)
    common.check_batch_keys(names, target=target, label=label,
                            pred_label=pred_label)
    self.target, self.label, self.pred_label = target, label, pred_label
    self.limit = limit
    self.fc_steps = fc_steps
    self.fc_seed = fc_seed

  def run(self, ctx: common.Context, seed: int):
    from gcjax import make_classifier, metric_weights
    from gcjax.metrics import classifier
    logits_fn = classifier.classifier_logits_fn(
        metric_weights.load_fashion_classifier().variables)
    rows = common.labelled_rows(ctx, self.pred, self.limit, seed,
                                target=self.target, label=self.label,
                                pred_label=self.pred_label)
    res = {}
    for name, (f, y) in rows.fake.items():
      y = y.astype(np.int32)
      fc_vars = make_classifier.train_classifier(
          to_uint8_28(f), y, self.fc_steps, self.fc_seed,
          batch_size=min(128, len(f)))
      fc_fn = classifier.classifier_logits_fn(fc_vars)
      res[name] = {'rc': accuracy(logits_fn, f, y),
                   'fc': accuracy(fc_fn, rows.real, rows.real_label)}
    return res

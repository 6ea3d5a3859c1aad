"""A domain Inception Score for Fashion-MNIST (classifier logits -> IS).

The FID Inception network (``gcjax.metrics.fid``) has no classification head,
so the Inception Score here is a *domain* score: the same formula,
``exp(E_x KL(p(y|x) || p(y)))``, computed with a small CNN that gcjax trains
itself on the Fashion-MNIST training set (10 classes, so the score lies in
[1, 10]). It is comparable only with other scores from this classifier, not
with ImageNet-Inception IS values in papers.

The network is ``gcjax.models.fashion_cnn.FashionCNN``; its weights ship
with gcjax (``gcjax.metric_weights.load_fashion_classifier``, made by
``python -m gcjax.make_classifier``). No data set is read here::

  clf = metric_weights.load_fashion_classifier()
  mean, std = inception_score(classifier_logits_fn(clf.variables), images)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gcjax.models.fashion_cnn import N_CLASSES, FashionCNN

PyTree = Any
__all__ = ['N_CLASSES', 'classifier_logits_fn', 'inception_score',
           'to_classifier_input']
_LUMA = (0.2125, 0.7154, 0.0721)


def to_classifier_input(images: jax.Array) -> jax.Array:
  """Generator outputs -> classifier inputs.

  Args:
    images: [B, H, W, 1|3] float in [-1, 1]; RGB is reduced to luma.

  Returns:
    [B, 28, 28, 1] float32 in [-1, 1] (antialiased bilinear resize).
  """
  images = jnp.asarray(images, jnp.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'expected [B, H, W, 1|3] images in [-1, 1], got shape '
                     f'{images.shape}')
  if images.shape[-1] == 3:
    images = jnp.tensordot(images, jnp.asarray(_LUMA), axes=1)[..., None]
  if images.shape[1:3] != (28, 28):
    images = jax.image.resize(images, (images.shape[0], 28, 28, 1),
                              'linear', antialias=True)
  return images


def classifier_logits_fn(variables: PyTree
                         ) -> Callable[[jax.Array], jax.Array]:
  """``fn(x [B, 28, 28, 1] in [-1, 1]) -> [B, 10] logits`` bound to variables."""
  model = FashionCNN()
  return lambda x: model.apply(variables, x)[0]


def inception_score(logits_fn: Callable[[jax.Array], jax.Array],
                    images: np.ndarray | jax.Array, splits: int = 10,
                    batch_size: int = 500) -> tuple[float, float]:
  """Inception Score ``exp(E_x KL(p(y|x) || p(y)))``, mean and std over splits.

  Args:
    logits_fn: ``fn([b, 28, 28, 1] float32 in [-1, 1]) -> [b, K] logits``
      (e.g. ``classifier_logits_fn(variables)``); traced under jit.
    images: [N, H, W, 1|3] float in [-1, 1]; converted with
      ``to_classifier_input``. N >= splits.
    splits: the images are cut into this many contiguous parts; p(y) is the
      mean prediction of a part.
    batch_size: images per classifier call (the last batch is padded, so
      there is a single compilation).

  Returns:
    (mean, std) of the per-split scores, python floats.
  """
  n = len(images)
  if n < splits or splits < 1:
    raise ValueError(f'need at least splits={splits} >= 1 images, got {n}')
  fwd = jax.jit(lambda x: jax.nn.log_softmax(
      logits_fn(to_classifier_input(x)).astype(jnp.float32), axis=-1))
  log_p = []
  for start in range(0, n, batch_size):
    batch = np.asarray(images[start:start + batch_size])
    m = len(batch)
    if m < batch_size and n > batch_size:
      pad = np.repeat(batch[-1:], batch_size - m, axis=0)
      batch = np.concatenate([batch, pad])
    log_p.append(np.asarray(fwd(batch), np.float64)[:m])
  log_p = np.concatenate(log_p)
  scores = []
  for part in np.array_split(log_p, splits):
    log_py = np.log(np.mean(np.exp(part), axis=0))
    kl = np.sum(np.exp(part) * (part - log_py), axis=1)
    scores.append(np.exp(np.mean(kl)))
  return float(np.mean(scores)), float(np.std(scores))

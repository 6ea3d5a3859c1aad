"""A domain Inception Score for Fashion-MNIST, with the classifier it needs.

The FID Inception network (``gcjax.metrics.fid``) has no classification head,
so the Inception Score here is a *domain* score: the same formula,
``exp(E_x KL(p(y|x) || p(y)))``, computed with a small CNN that gcjax trains
itself on the Fashion-MNIST training set (10 classes, so the score lies in
[1, 10]). It is comparable only with other scores from this classifier, not
with ImageNet-Inception IS values in papers.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

PyTree = Any
N_CLASSES = 10
_CACHE_VERSION = 1
_LUMA = (0.2125, 0.7154, 0.0721)


class FashionCNN(nn.Module):
  """Two conv-pool stages and an MLP head; 0.21M parameters, 1.2M MACs."""
  n_classes: int = N_CLASSES

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Classifies 28x28 grayscale images.

    Args:
      x: [B, 28, 28, 1] float32 in [-1, 1].
      train: unused (no batch norm or dropout); kept for the common API.

    Returns:
      (logits [B, n_classes], {'pool2': [B, 7, 7, 32], 'hidden': [B, 128]}).
    """
    del train
    h = nn.relu(nn.Conv(16, (3, 3), name='conv1')(x))
    h = nn.max_pool(h, (2, 2), strides=(2, 2))
    h = nn.relu(nn.Conv(32, (3, 3), name='conv2')(h))
    pool2 = nn.max_pool(h, (2, 2), strides=(2, 2))
    hidden = nn.relu(nn.Dense(128, name='fc1')(
        pool2.reshape(pool2.shape[0], -1)))
    logits = nn.Dense(self.n_classes, name='fc2')(hidden)
    return logits, {'pool2': pool2, 'hidden': hidden}


def uint8_to_input(images: jax.Array) -> jax.Array:
  """[N, 28, 28] uint8 -> [N, 28, 28, 1] float32 in [-1, 1]."""
  return (jnp.asarray(images, jnp.float32) / 127.5 - 1.0)[..., None]


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


def train_classifier(images: np.ndarray, labels: np.ndarray, steps: int,
                     seed: int, batch_size: int = 128,
                     learning_rate: float = 2e-3) -> PyTree:
  """Trains a FashionCNN with Adam on random minibatches (no I/O).

  Args:
    images: [N, 28, 28] uint8.
    labels: [N] int class ids in [0, N_CLASSES).
    steps: optimizer steps.
    seed: PRNG seed for initialization and batch sampling.
    batch_size: examples per step (sampled with replacement).
    learning_rate: peak Adam learning rate (cosine decay to 0).

  Returns:
    The trained variables ``{'params': ...}``.
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim != 3 or images.shape[1:] != (28, 28):
    raise ValueError(f'images must be [N, 28, 28] uint8, got {images.shape}')
  if labels.shape != images.shape[:1]:
    raise ValueError(f'labels shape {labels.shape} does not match images '
                     f'{images.shape}')
  if labels.min() < 0 or labels.max() >= N_CLASSES:
    raise ValueError(f'labels must lie in [0, {N_CLASSES}), got '
                     f'[{labels.min()}, {labels.max()}]')
  model = FashionCNN()
  init_key, loop_key = jax.random.split(jax.random.key(seed))
  params = model.init(init_key, jnp.zeros((1, 28, 28, 1)))['params']
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

  def loss_fn(p, x, y):
    logits, _ = model.apply({'params': p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  # NOTE: a Python loop over a jitted step, not lax.fori_loop: XLA:CPU runs
  # the convolution gradients inside a while loop about 4x slower.
  @jax.jit
  def step(p, opt_state, i, images, labels):
    idx = jax.random.randint(jax.random.fold_in(loop_key, i), (batch_size,),
                             0, images.shape[0])
    grads = jax.grad(loss_fn)(p, uint8_to_input(images[idx]), labels[idx])
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  images = jnp.asarray(images)
  labels = jnp.asarray(labels, jnp.int32)
  opt_state = tx.init(params)
  for i in range(steps):
    params, opt_state = step(params, opt_state, jnp.int32(i), images, labels)
  params = jax.block_until_ready(params)
  return {'params': params}


def classifier_logits_fn(variables: PyTree
                         ) -> Callable[[jax.Array], jax.Array]:
  """``fn(x [B, 28, 28, 1] in [-1, 1]) -> [B, 10] logits`` bound to variables."""
  model = FashionCNN()
  return lambda x: model.apply(variables, x)[0]


def accuracy(variables: PyTree, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 2000) -> float:
  """Top-1 accuracy on [N, 28, 28] uint8 images."""
  fn = jax.jit(lambda x: jnp.argmax(
      classifier_logits_fn(variables)(uint8_to_input(x)), -1))
  correct = 0
  for start in range(0, len(images), batch_size):
    pred = fn(images[start:start + batch_size])
    correct += int(np.sum(np.asarray(pred) == labels[start:start + batch_size]))
  return correct / len(images)


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


class FashionClassifier(NamedTuple):
  """A trained FashionCNN: its logits function, variables and test accuracy."""
  logits_fn: Callable[[jax.Array], jax.Array]
  variables: PyTree
  test_accuracy: float


def _save_npz_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.',
                             prefix=os.path.basename(path) + '.',
                             suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def load_or_train_fmnist_classifier(cache_dir: str, steps: int = 2000,
                                    seed: int = 0) -> FashionClassifier:
  """The cached Fashion-MNIST classifier, trained on first use.

  Reads the Fashion-MNIST train/test sets (``gcjax.data.embedded``), trains
  ``steps`` Adam steps of batch 128 (a few minutes on a CPU core, seconds on
  a GPU; test accuracy 89.8% at 1500 steps, 91.2% at 3000)
  and writes ``<cache_dir>/fmnist_cnn-v<version>-s<steps>-seed<seed>.npz``
  atomically; later calls only read that file.

  Args:
    cache_dir: folder for the npz (created if missing).
    steps: training steps (part of the cache key).
    seed: training seed (part of the cache key).

  Returns:
    A FashionClassifier.
  """
  path = os.path.join(
      cache_dir, f'fmnist_cnn-v{_CACHE_VERSION}-s{steps}-seed{seed}.npz')
  if not os.path.exists(path):
    from gcjax.data import embedded  # Only needed when training.
    train_x, train_y = embedded.load_fashion_mnist('train')
    test_x, test_y = embedded.load_fashion_mnist('test')
    variables = train_classifier(train_x, train_y, steps, seed)
    acc = accuracy(variables, test_x, test_y)
    flat = traverse_util.flatten_dict(jax.device_get(variables), sep='/')
    arrays = {k: np.asarray(v) for k, v in flat.items()}
    arrays['test_accuracy'] = np.asarray(acc, np.float64)
    _save_npz_atomic(path, arrays)
  with np.load(path, allow_pickle=False) as z:
    arrays = {k: z[k] for k in z.files}
  acc = float(arrays.pop('test_accuracy'))
  variables = traverse_util.unflatten_dict(
      {k: jnp.asarray(v) for k, v in arrays.items()}, sep='/')
  return FashionClassifier(classifier_logits_fn(variables), variables, acc)

"""Trains the Fashion-MNIST classifier of the domain IS and writes its weights.

``python -m gcjax.make_classifier --out=gcjax/weights/fashion_classifier.npz``

Reads the Fashion-MNIST train/test sets (``gcjax.data.embedded``), trains a
`FashionCNN` with Adam (``--steps`` steps of batch 128, seed ``--seed``),
measures its test accuracy and writes the variables as a flat ``.npz``
(keys ``params/conv1/kernel``, ...; plus the scalar ``test_accuracy``). It
prints the file's SHA-256: pin it as ``metric_weights.FASHION_CLASSIFIER_SHA256``
when replacing the shipped file (the zip container holds timestamps, so a
retrained file has a new digest even if its weights are identical).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from gcjax import npz
from gcjax.models.fashion_cnn import N_CLASSES, FashionCNN

PyTree = Any

DEFAULT_STEPS = 2000
DEFAULT_SEED = 0


def uint8_to_input(images: jax.Array) -> jax.Array:
  """[N, 28, 28] uint8 -> [N, 28, 28, 1] float32 in [-1, 1]."""
  return (jnp.asarray(images, jnp.float32) / 127.5 - 1.0)[..., None]


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


def accuracy(variables: PyTree, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 2000) -> float:
  """Top-1 accuracy on [N, 28, 28] uint8 images."""
  model = FashionCNN()
  fn = jax.jit(lambda x: jnp.argmax(
      model.apply(variables, uint8_to_input(x))[0], -1))
  correct = 0
  for start in range(0, len(images), batch_size):
    pred = fn(images[start:start + batch_size])
    correct += int(np.sum(np.asarray(pred) == labels[start:start + batch_size]))
  return correct / len(images)


def to_arrays(variables: PyTree, test_accuracy: float
              ) -> dict[str, np.ndarray]:
  """The flat arrays of the weights file (see the module docstring)."""
  flat = traverse_util.flatten_dict(jax.device_get(variables), sep='/')
  arrays = {k: np.asarray(v, np.float32) for k, v in flat.items()}
  arrays['test_accuracy'] = np.asarray(test_accuracy, np.float64)
  return arrays


def make(out: str, steps: int = DEFAULT_STEPS, seed: int = DEFAULT_SEED
         ) -> float:
  """Trains on Fashion-MNIST, writes `out` atomically; returns test accuracy."""
  from gcjax.data import embedded
  train_x, train_y = embedded.load_fashion_mnist('train')
  test_x, test_y = embedded.load_fashion_mnist('test')
  variables = train_classifier(train_x, train_y, steps, seed)
  acc = accuracy(variables, test_x, test_y)
  npz.save_atomic(out, to_arrays(variables, acc))
  return acc


def main(argv: list[str] | None = None) -> None:
  from gcjax import assets
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='output .npz path')
  parser.add_argument('--steps', type=int, default=DEFAULT_STEPS)
  parser.add_argument('--seed', type=int, default=DEFAULT_SEED)
  args = parser.parse_args(argv)
  acc = make(args.out, args.steps, args.seed)
  print(f'gcjax.make_classifier: test accuracy {acc:.4f} -> {args.out} '
        f'(sha256 {assets.sha256_of(args.out)})', file=sys.stderr)


if __name__ == '__main__':
  main()

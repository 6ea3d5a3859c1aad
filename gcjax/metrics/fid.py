"""FID and KID: Inception pool3 features, their statistics, the distances.

Features come from the FID Inception-v3 (``gcjax.models.inception``; its
variables from ``gcjax.metric_weights.load_inception_params``), run jitted
and data-parallel over fixed-size batches (`inception_fn`,
`extract_features`). `FeatureStats` is the one way statistics are computed:
feature batches are added as they stream in (``update``), and the float64
mean ``mu``, covariance ``sigma`` (ddof 1) and the kept feature rows
``feats`` (every row, a uniform reservoir, or none) are read at the end;
`fid` / `fid_from_stats` and `kid` turn them into distances, and
`save_stats` / `load_stats` keep real-image statistics in an ``.npz``.

`fid_from_stats` takes the matrix square root through symmetric
eigendecompositions, which stays real and finite when a covariance is
singular (fewer samples than 2048).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import jax
import numpy as np
from jax import lax

from gcjax import npz
from gcjax.models.inception import FEATURE_DIM, FIDInceptionV3, preprocess


def _sharded_jit(forward: Callable[[Any, Any], jax.Array],
                 devices: tuple[jax.Device, ...]):
  """(jitted ``forward(variables, batch)``, the variables' sharding): the
  batch axis split over a ``('data',)`` mesh of ``devices``, the variables
  replicated; a plain jit on one device."""
  mesh = jax.sharding.Mesh(np.array(devices), ('data',))
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  if len(devices) > 1:
    batch = jax.sharding.NamedSharding(mesh,
                                       jax.sharding.PartitionSpec('data'))
    return jax.jit(forward, in_shardings=(rep, batch),
                   out_shardings=batch), rep
  return jax.jit(forward), rep


def _placed(jitted, rep, variables: Any, n_dev: int
            ) -> Callable[[Any], jax.Array]:
  """``fn(batch) -> jitted(variables, batch)``, variables placed once."""
  variables = jax.device_put(variables, rep)

  def fn(batch):
    size = np.shape(batch)[0]
    if size % n_dev:
      raise ValueError(f'batch of {size} is not divisible by the {n_dev} '
                       'devices; pad it (extract_features does).')
    return jitted(variables, batch)

  return fn


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
  devices = tuple(jax.devices() if devices is None else devices)
  return _placed(*_sharded_jit(forward, devices), variables, len(devices))


def _preprocess(variables, images):
  del variables
  return preprocess(images)


@functools.lru_cache(maxsize=None)
def _inception_jits(precision: Any, devices: tuple[jax.Device, ...]):
  """The jitted preprocessing and network, built once per process and
  device set: every `inception_fn` shares their compiles, and the network
  (fixed [B, 299, 299, 3] input) compiles once per batch size whatever the
  images' size."""
  model = FIDInceptionV3(precision=precision)

  def network(v, x):
    return model.apply(v, x)[0]

  return _sharded_jit(_preprocess, devices), _sharded_jit(network, devices)


def inception_fn(variables: dict[str, Any],
                 precision: Any = lax.Precision.HIGHEST,
                 devices: Sequence[jax.Device] | None = None
                 ) -> Callable[[Any], jax.Array]:
  """A jitted images -> pool3 features function.

  With several devices (default: all of ``jax.devices()``) the batch axis
  is sharded over a ``('data',)`` mesh and the variables are replicated;
  the batch size must then be a multiple of the device count. Use a fixed
  batch size (see `extract_features`) to compile once: the network is
  compiled once per process for each batch size and device set, shared by
  every function this returns (`preprocess` compiles per image size).

  Args:
    variables: from `load_inception_params`.
    precision: convolution precision (HIGHEST keeps float32 on GPU/TPU).
    devices: devices to shard the batch over.

  Returns:
    ``fn(images [B, H, W, C] float in [-1, 1], C in {1, 3}) -> [B, 2048]
    float32``, following `preprocess`.
  """
  devices = tuple(jax.devices() if devices is None else devices)
  pre, net = _inception_jits(precision, devices)
  pre = _placed(*pre, {}, len(devices))
  run = _placed(*net, variables, len(devices))

  def fn(images):
    shape = np.shape(images)
    if len(shape) != 4 or shape[-1] not in (1, 3):
      raise ValueError('FID images must be [B, H, W, C] with C in {1, 3}; '
                       f'got shape {shape}')
    return run(pre(images))

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
  """Streaming float64 mean/covariance of features, plus kept feature rows.

  THE way gcjax computes feature statistics (evaluators, ``gcjax.stats``)::

    s = FeatureStats(reservoir_size=None)   # keep every row (for KID)
    for f in extract_features(fn, batches, batch_size):
      s.update(f)                           # [b, 2048]
    s.mu, s.sigma, s.feats, s.n

  Moments are merged batch by batch (Chan et al.'s pairwise update of the
  mean and the centered outer-product sum), which is exact and avoids the
  cancellation of a raw sum-of-squares; they equal ``f.mean(0)`` and
  ``np.cov(f, rowvar=False)`` of all rows up to float64 round-off. No
  images are kept. Feature rows (float32) are kept as `reservoir_size`
  says: 0 none; None every row, in order; k > 0 a uniform sample (without
  replacement) of at most k rows, drawn with ``np.random.default_rng(seed)``.
  """

  def __init__(self, dim: int = FEATURE_DIM, reservoir_size: int | None = 0,
               seed: int = 0):
    if reservoir_size is not None and reservoir_size < 0:
      raise ValueError(f'reservoir_size must be None or >= 0, got '
                       f'{reservoir_size}')
    self.dim = dim
    self.n = 0
    self._mean = np.zeros(dim, np.float64)
    self._m2 = np.zeros((dim, dim), np.float64)
    self.reservoir_size = reservoir_size
    self._res = np.zeros((0, dim), np.float32)
    self._kept: list[np.ndarray] = []  # reservoir_size None: every batch
    self._rng = np.random.default_rng(seed)

  def update(self, feats: Any) -> None:
    """Adds a batch of features [B, dim] (any float dtype)."""
    f = np.asarray(feats, np.float64)
    if f.ndim != 2 or f.shape[1] != self.dim:
      raise ValueError(f'features must be [B, {self.dim}]; got {f.shape}')
    if not len(f):
      return
    mean_b = f.mean(0)
    c = f - mean_b
    self._merge(len(f), mean_b, c.T @ c)
    self._reservoir_add(np.array(feats, np.float32))

  def _merge(self, n_b, mean_b, m2_b):
    n_a, n = self.n, self.n + n_b
    delta = mean_b - self._mean
    self._m2 += m2_b + np.outer(delta, delta) * (n_a * n_b / n)
    self._mean += delta * (n_b / n)
    self.n = n

  def _reservoir_add(self, f):
    k = self.reservoir_size
    if k is None:
      self._kept.append(f)
      return
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
    if (self.reservoir_size is None) != (other.reservoir_size is None):
      raise ValueError('cannot merge an accumulator that keeps every row '
                       'with one that does not')
    if not other.n:
      return
    if self.reservoir_size is None:
      self._merge(other.n, other._mean, other._m2)
      self._kept.extend(other._kept)
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
    """[N or <= reservoir_size, dim] float32 kept rows; None if none kept."""
    if self.reservoir_size is None:
      if not self._kept:
        return np.zeros((0, self.dim), np.float32)
      if len(self._kept) > 1:
        self._kept = [np.concatenate(self._kept)]
      return self._kept[0].copy()
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


def trace_sqrt_product_lowrank(feats1: np.ndarray, sigma2: np.ndarray
                               ) -> float:
  """tr(sqrtm(sigma1 @ sigma2)) where sigma1 is the covariance of the rows
  ``feats1`` [N, D] (N <= D), in float64.

  With A = (feats1 - mean) / sqrt(N - 1), sigma1 = A^T A, and the nonzero
  eigenvalues of A^T A sigma2 are those of the N x N PSD matrix
  A sigma2 A^T: the same value as `trace_sqrt_product` without a D x D
  eigendecomposition (seconds instead of a minute for D = 2048).
  """
  f = np.asarray(feats1, np.float64)
  a = (f - f.mean(0)) / np.sqrt(len(f) - 1)
  m = a @ np.asarray(sigma2, np.float64) @ a.T
  w = np.linalg.eigvalsh((m + m.T) / 2)
  return float(np.sqrt(np.clip(w, 0, None)).sum())


def fid(stats1: Any, stats2: Any) -> float:
  """FID between two objects with ``mu`` and ``sigma`` (stats or files).

  When ``stats1`` keeps all its rows (``feats``, N <= D) the trace term
  comes from them (`trace_sqrt_product_lowrank`; same value, faster).
  """
  feats = getattr(stats1, 'feats', None)
  n = getattr(stats1, 'n', None)
  if feats is None or n is None or not 2 <= len(feats) == n <= feats.shape[1]:
    return fid_from_stats(stats1.mu, stats1.sigma, stats2.mu, stats2.sigma)
  mu1, mu2 = np.asarray(stats1.mu, np.float64), np.asarray(stats2.mu,
                                                           np.float64)
  s1, s2 = np.asarray(stats1.sigma, np.float64), np.asarray(stats2.sigma,
                                                            np.float64)
  diff = mu1 - mu2
  value = (diff @ diff + np.trace(s1) + np.trace(s2)
           - 2 * trace_sqrt_product_lowrank(feats, s2))
  return float(max(value, 0.0))


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
  """Writes ``mu``, ``sigma``, ``n`` (and ``feats`` if any) to an .npz,
  with the SHA-256 of the arrays that `load_stats` checks.

  Args:
    path: destination (written atomically; no suffix is added).
    stats: a `FeatureStats` or `SavedStats`.
  """
  arrays = dict(mu=np.asarray(stats.mu, np.float64),
                sigma=np.asarray(stats.sigma, np.float64),
                n=np.asarray(stats.n, np.int64))
  if stats.feats is not None:
    arrays['feats'] = np.asarray(stats.feats, np.float32)
  npz.save_atomic(path, arrays, digest=True)


def load_stats(path: str | os.PathLike, require_digest: bool = False
               ) -> SavedStats:
  """Reads statistics written by `save_stats` (no pickles allowed).

  Args:
    path: the ``.npz``.
    require_digest: refuse a file without a recorded SHA-256 (caches).

  Raises:
    gcjax.npz.DamagedFile: unreadable, or the arrays differ from their
      recorded digest.
    ValueError: keys or shapes are not those of `save_stats`.
  """
  z = npz.load(path, require_digest=require_digest)
  missing = {'mu', 'sigma', 'n'} - set(z)
  if missing:
    raise ValueError(f'{path}: not an FID stats file, missing '
                     f'{sorted(missing)} (has {sorted(z)})')
  mu, sigma, n = z['mu'], z['sigma'], int(z['n'])
  feats = z.get('feats')
  d = mu.shape[0] if mu.ndim == 1 else -1
  if d < 1 or sigma.shape != (d, d) or (
      feats is not None and (feats.ndim != 2 or feats.shape[1] != d)):
    raise ValueError(
        f'{path}: inconsistent shapes mu {mu.shape}, sigma {sigma.shape}, '
        f'feats {None if feats is None else feats.shape}')
  return SavedStats(mu.astype(np.float64), sigma.astype(np.float64), n,
                    feats)

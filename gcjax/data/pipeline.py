"""Deterministic, resumable batching of in-memory uint8 arrays.

The batch of step i depends only on (seed, i): with all arrays of one length,
epoch e = i // steps_per_epoch is read in the order of the permutation drawn
from np.random.default_rng([seed, e]). A resumed run therefore reads exactly
the batches an uninterrupted run would have. Each process takes its own rows
of the global batch; `to_global` assembles them into one jax.Array sharded
over the mesh's data axis.

uint8 arrays become float32 in [-1, 1]; arrays of other dtypes (labels) are
passed through unchanged.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping

import numpy as np

Batch = dict[str, np.ndarray]


def to_float(x: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]; other dtypes unchanged."""
  if x.dtype == np.uint8:
    return x.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
  return x


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, int]:
  if not arrays:
    raise ValueError('arrays is empty: need at least one key')
  sizes = {k: int(np.shape(v)[0]) if np.ndim(v) else 0
           for k, v in arrays.items()}
  empty = [k for k, n in sizes.items() if n == 0]
  if empty:
    raise ValueError(f'empty dataset: arrays {empty} have no rows')
  return sizes


class Batcher:
  """Deterministic, resumable global batches; yields this process's shard.

  If all arrays have the same length they are shuffled together (pairs stay
  aligned). If lengths differ (unpaired domains), each key is read from its
  own endless stream of per-epoch permutations,
  np.random.default_rng([seed, epoch, key_index]) with keys in sorted order,
  and one "epoch" of the Batcher covers the longest array.

  Augmentation (same for every image key of a row, so pairs stay aligned;
  drawn from np.random.default_rng([seed, step, 1]) over the global batch):
  `flip` mirrors rows left-right with probability 1/2; `jitter` > 0 pads by
  `jitter` pixels (reflect) and crops back at a random offset, a cheap form
  of pix2pix's resize-and-random-crop.
  """

  def __init__(
      self,
      arrays: Mapping[str, np.ndarray],
      global_batch: int,
      seed: int,
      process_index: int = 0,
      process_count: int = 1,
      shuffle: bool = True,
      drop_remainder: bool = True,
      flip: bool = False,
      jitter: int = 0,
      device_count: int | None = None,
  ):
    """Builds the batcher.

    Args:
      arrays: name -> array [N_k, ...]; uint8 images [N, H, W, C].
      global_batch: rows per step over all processes.
      seed: data seed (keep it apart from the model seed).
      process_index: this process (jax.process_index()).
      process_count: number of processes (jax.process_count()).
      shuffle: permute each epoch; False reads in stored order.
      drop_remainder: True: an epoch is N // global_batch steps and the last
        partial batch is skipped. False: ceil(N / global_batch) steps and the
        last batch is topped up with the epoch's first rows (shapes never
        change, so nothing recompiles).
      flip: random horizontal flips.
      jitter: random translation in pixels (0 = off).
      device_count: devices the batch is split over; None asks
        jax.device_count(). The global batch must divide by it.
    """
    self._sizes = _check_arrays(arrays)
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if global_batch <= 0:
      raise ValueError(f'global_batch must be positive, got {global_batch}')
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} not in '
                       f'[0, {process_count})')
    if global_batch % process_count:
      raise ValueError(f'global batch {global_batch} is not divisible by '
                       f'the process count {process_count}')
    if device_count is None:
      import jax
      device_count = jax.device_count()
    if global_batch % device_count:
      raise ValueError(f'global batch {global_batch} is not divisible by '
                       f'the device count {device_count}')
    if jitter < 0:
      raise ValueError(f'jitter must be >= 0, got {jitter}')
    size = max(self._sizes.values())
    if drop_remainder and size < global_batch:
      raise ValueError(f'dataset has {size} rows, fewer than one global '
                       f'batch of {global_batch} (use a smaller batch or '
                       'drop_remainder=False)')
    self.global_batch = global_batch
    self.seed = seed
    self.process_index = process_index
    self.process_count = process_count
    self.local_batch = global_batch // process_count
    self.shuffle = shuffle
    self.drop_remainder = drop_remainder
    self.flip = flip
    self.jitter = jitter
    self.aligned = len(set(self._sizes.values())) == 1
    self.size = size
    self.steps_per_epoch = (size // global_batch if drop_remainder
                            else -(-size // global_batch))

  def _permutation(self, n: int, *key: int) -> np.ndarray:
    if not self.shuffle:
      return np.arange(n)
    return np.random.default_rng([self.seed, *key]).permutation(n)

  def _aligned_indices(self, step: int) -> np.ndarray:
    epoch, offset = divmod(step, self.steps_per_epoch)
    perm = self._permutation(self.size, epoch)
    pos = offset * self.global_batch + np.arange(self.global_batch)
    return perm[pos % self.size]  # Wraps only for drop_remainder=False.

  def _stream_indices(self, step: int, n: int, key_index: int) -> np.ndarray:
    """Rows [step * B, (step + 1) * B) of an endless permutation stream."""
    pos = step * self.global_batch + np.arange(self.global_batch)
    epochs, within = np.divmod(pos, n)
    out = np.empty_like(pos)
    for epoch in np.unique(epochs):
      sel = epochs == epoch
      out[sel] = self._permutation(n, int(epoch), key_index)[within[sel]]
    return out

  def global_indices(self, step: int) -> dict[str, np.ndarray]:
    """Row indices of the whole global batch of `step`, per key: int [B]."""
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    if self.aligned:
      idx = self._aligned_indices(step)
      return {k: idx for k in self.arrays}
    return {k: self._stream_indices(step, self._sizes[k], i)
            for i, k in enumerate(sorted(self.arrays))}

  def _augment(self, batch: Batch, step: int) -> Batch:
    rng = np.random.default_rng([self.seed, step, 1])
    flips = rng.random(self.global_batch) < 0.5
    shifts = rng.integers(0, 2 * self.jitter + 1, (self.global_batch, 2))
    lo = self.process_index * self.local_batch
    flips = flips[lo:lo + self.local_batch]
    shifts = shifts[lo:lo + self.local_batch]
    out = {}
    for k, x in batch.items():
      if x.ndim != 4:
        out[k] = x
        continue
      x = x.copy()
      if self.flip:
        x[flips] = x[flips, :, ::-1]
      if self.jitter:
        j, (h, w) = self.jitter, x.shape[1:3]
        padded = np.pad(x, ((0, 0), (j, j), (j, j), (0, 0)), mode='reflect')
        for r, (dy, dx) in enumerate(shifts):
          x[r] = padded[r, dy:dy + h, dx:dx + w]
      out[k] = x
    return out

  def batch(self, step: int) -> Batch:
    """This process's rows of the batch of `step`.

    Returns:
      name -> array [global_batch // process_count, ...]; uint8 inputs as
      float32 in [-1, 1], other dtypes unchanged.
    """
    lo = self.process_index * self.local_batch
    out = {}
    for k, idx in self.global_indices(step).items():
      out[k] = self.arrays[k][idx[lo:lo + self.local_batch]]
    if self.flip or self.jitter:
      out = self._augment(out, step)
    return {k: to_float(v) for k, v in out.items()}

  def iterate(self, start_step: int = 0,
              prefetch: int = 2) -> Iterator[tuple[int, Batch]]:
    """Yields (step, batch) from `start_step` on, forever.

    A host thread prepares up to `prefetch` batches ahead. Errors in the
    thread are raised here. Closing the generator stops the thread.
    """
    if prefetch < 1:
      yield from ((s, self.batch(s)) for s in _count(start_step))
      return
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def worker():
      step = start_step
      while not stop.is_set():
        try:
          item = (step, self.batch(step), None)
        except BaseException as e:  # Handed to the consumer.
          item = (step, None, e)
        while not stop.is_set():
          try:
            q.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if item[2] is not None:
          return
        step += 1

    thread = threading.Thread(target=worker, daemon=True,
                              name='gcjax-prefetch')
    thread.start()
    try:
      while True:
        step, batch, error = q.get()
        if error is not None:
          raise error
        yield step, batch
    finally:
      stop.set()
      thread.join(timeout=5)


def _count(start: int) -> Iterator[int]:
  while True:
    yield start
    start += 1


def to_global(batch: Mapping[str, np.ndarray], mesh, axis: str = 'data'):
  """Assembles process-local batches into global jax.Arrays.

  Works for one or many processes: each process passes its own rows (as
  given by Batcher.batch) and gets arrays of global shape sharded
  P(axis) along dimension 0.

  Args:
    batch: name -> array [local_batch, ...].
    mesh: jax.sharding.Mesh with an `axis` dimension.
    axis: mesh axis to shard the batch over.

  Returns:
    name -> jax.Array [local_batch * process_count, ...].
  """
  import jax
  from jax.sharding import NamedSharding, PartitionSpec

  if axis not in mesh.axis_names:
    raise ValueError(f'mesh has no axis {axis!r} (axes: {mesh.axis_names})')
  sharding = NamedSharding(mesh, PartitionSpec(axis))
  n_dev = mesh.shape[axis]
  out = {}
  for k, x in batch.items():
    rows = np.shape(x)[0] * jax.process_count()
    if rows % n_dev:
      raise ValueError(f'{k}: global batch {rows} is not divisible by the '
                       f'{n_dev} devices of mesh axis {axis!r}')
    out[k] = jax.make_array_from_process_local_data(sharding, np.asarray(x))
  return out


def eval_batches(
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[tuple[Batch, np.ndarray]]:
  """Fixed-size batches over every row once, in order, for evaluation.

  The last batch is padded (with copies of row 0) to `batch_size`, so a
  jitted evaluator compiles once; `mask` says which rows are real.

  Args:
    arrays: name -> array [N, ...], all of one length.
    batch_size: global rows per batch (divisible by process_count).
    process_index: this process.
    process_count: number of processes; each gets its rows of every batch.

  Yields:
    (batch, mask): batch as in Batcher.batch with
    batch_size // process_count rows; mask bool [same rows], True for real
    rows. `mask.sum()` over all batches and processes is N.
  """
  sizes = _check_arrays(arrays)
  if len(set(sizes.values())) != 1:
    raise ValueError(f'eval arrays must have one length, got {sizes}')
  if batch_size <= 0 or batch_size % process_count:
    raise ValueError(f'batch_size {batch_size} must be positive and '
                     f'divisible by the process count {process_count}')
  n = next(iter(sizes.values()))
  local = batch_size // process_count
  lo = process_index * local
  for start in range(0, n, batch_size):
    pos = start + lo + np.arange(local)
    mask = pos < n
    idx = np.where(mask, pos, 0)
    yield {k: to_float(np.asarray(v)[idx]) for k, v in arrays.items()}, mask

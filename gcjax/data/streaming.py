"""Streaming training input: grain loaders, per-process shards, resumable.

The in-memory `pipeline.Batcher` holds a split decoded in RAM. `Streamer`
instead reads records from `sources.streams` through one grain DataLoader
per stream: each JAX process samples only its own shard of the records
(``ShardOptions(process_index, process_count)``), decodes and augments them
in `workers` grain processes, and assembles its rows of every global batch
(`pipeline.to_global` makes the global array, as for the in-memory
batcher). A host thread keeps `prefetch` batches ready.

Resume: `get_state` is the grain iterator state (one per stream) *after the
last batch handed out*, plus the count of skipped records; the trainer
saves it with the train state (grain's orbax handler writes one file per
process in the same checkpoint step), and `set_state` restores it, so a
restarted run reads the batches an uninterrupted one would.

Bad records (`sources.BAD`): ``on_bad='error'`` raises a UserError naming
the record; ``'skip'`` drops it, counts it (`skipped`) and names the first
few on stderr.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from collections.abc import Iterator, Mapping

import grain.python as grain
import numpy as np

from gcjax import errors
from gcjax.data import pipeline, sources

POLICIES = ('error', 'skip')
MODES = ('auto', 'on', 'off')
_SHOW_SKIPS = 5


def enabled(d) -> bool:
  """Whether config section `d` (`config.data`) trains from a stream.

  ``d.streaming``: 'on', 'off', or 'auto' (the default): stream when the
  train split would take more than ``d.max_memory_gb`` GiB decoded
  (`sources.decoded_bytes`, from file counts, without decoding). Sections
  without the keys (older configs) read into memory.
  """
  mode = d.get('streaming', 'off')
  if isinstance(mode, bool):
    mode = 'on' if mode else 'off'
  if mode not in MODES:
    raise errors.UserError(f'data.streaming must be one of {MODES}, got '
                           f'{mode!r}')
  if mode != 'auto':
    return mode == 'on'
  limit_gb = float(d.get('max_memory_gb', 8.0))
  size = sources.decoded_bytes(d.name, d.train_split, d.args.to_dict(),
                               int(d.get('train_limit', 0)))
  return size > limit_gb * 2**30


class Streamer:
  """Endless, resumable local batches read through grain; see the module."""

  def __init__(
      self,
      streams: Mapping[str, sources.Stream],
      global_batch: int,
      seed: int,
      process_index: int = 0,
      process_count: int = 1,
      flip: bool = False,
      jitter: int = 0,
      workers: int = 0,
      on_bad: str = 'error',
      prefetch: int = 2,
      shuffle: bool = True,
  ):
    """Builds the loaders (no worker starts before `iterate`).

    Args:
      streams: from `sources.streams`; one for aligned data, one per
        domain (each shuffled on its own) for unpaired data.
      global_batch: rows per step over all processes.
      seed: data seed (shuffling and augmentation).
      process_index, process_count: this process and how many there are.
      flip, jitter: augmentation as in `pipeline.Batcher`.
      workers: grain worker processes per stream (0: decode in threads of
        this process).
      on_bad: 'error' or 'skip' (see the module docstring).
      prefetch: batches prepared ahead by a host thread.
      shuffle: False reads each shard in stored order (tests).
    """
    if on_bad not in POLICIES:
      raise errors.UserError(f'data.on_bad_example must be one of '
                             f'{POLICIES}, got {on_bad!r}')
    if workers < 0:
      raise errors.UserError(f'data.workers must be >= 0, got {workers}')
    if global_batch <= 0 or global_batch % process_count:
      raise ValueError(f'global batch {global_batch} must be positive and '
                       f'divisible by the process count {process_count}')
    if jitter < 0:
      raise ValueError(f'jitter must be >= 0, got {jitter}')
    self.streams = dict(streams)
    for name, s in self.streams.items():
      if len(s.source) < process_count:
        raise errors.UserError(
            f'stream {name!r} has {len(s.source)} records, fewer than the '
            f'{process_count} processes that share it')
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self.process_index = process_index
    self.process_count = process_count
    self.seed = seed
    self.flip, self.jitter = flip, jitter
    self.workers = workers
    self.on_bad = on_bad
    self.prefetch = prefetch
    self.shuffle = shuffle
    self.skipped = 0
    self._states: dict[str, str] | None = None   # after the last batch out
    self._restored: dict[str, str] | None = None

  # ---- grain -------------------------------------------------------------

  def shard_options(self) -> grain.ShardOptions:
    return grain.ShardOptions(shard_index=self.process_index,
                              shard_count=self.process_count,
                              drop_remainder=False)

  def loader(self, name: str) -> grain.DataLoader:
    """The grain DataLoader of stream `name` (records, not batches)."""
    if self.workers:
      from absl import flags
      if not flags.FLAGS.is_parsed():  # grain's workers read absl flags
        flags.FLAGS.mark_as_parsed()
    s = self.streams[name]
    ops = list(s.decode)
    if self.flip or self.jitter:
      ops.append(sources.Augment(self.flip, self.jitter))
    # Streams of one run differ in seed so unpaired domains shuffle apart.
    seed = self.seed * 1000 + sorted(self.streams).index(name)
    sampler = grain.IndexSampler(
        len(s.source), shard_options=self.shard_options(),
        shuffle=self.shuffle, num_epochs=None, seed=seed)
    return grain.DataLoader(
        data_source=s.source, sampler=sampler, operations=ops,
        worker_count=self.workers,
        worker_buffer_size=max(2, self.local_batch),
        read_options=grain.ReadOptions(
            num_threads=2, prefetch_buffer_size=max(8, 2 * self.local_batch)))

  # ---- orbax's PyGrainCheckpointHandler protocol --------------------------

  def get_state(self) -> bytes:
    """State after the last batch handed out (JSON bytes)."""
    if self._states is None:
      raise RuntimeError('Streamer.get_state before any batch was read')
    return json.dumps({'streams': self._states,
                       'skipped': self.skipped}).encode()

  def set_state(self, state: bytes) -> None:
    """Continues after the batch that `state` was taken at."""
    got = json.loads(state.decode() if isinstance(state, bytes) else state)
    if sorted(got['streams']) != sorted(self.streams):
      raise errors.UserError(
          f'the checkpoint\'s input state has streams {sorted(got["streams"])}'
          f', this config reads {sorted(self.streams)}; use a fresh --workdir')
    self._restored = dict(got['streams'])
    self._states = dict(got['streams'])
    self.skipped = int(got['skipped'])

  def start_prefetch(self) -> None:
    """Part of grain's handler protocol; `iterate` starts reading."""

  @property
  def restored(self) -> bool:
    return self._restored is not None

  # ---- records -> batches -------------------------------------------------

  def _good(self, it: Iterator, name: str, skipped: list[int]) -> dict:
    while True:
      record = next(it)
      if sources.BAD not in record:
        return record
      if self.on_bad == 'error':
        raise errors.UserError(
            f'{record[sources.BAD]} (set data.on_bad_example=skip to skip '
            'undecodable examples)')
      skipped[0] += 1
      if skipped[0] <= _SHOW_SKIPS:
        print(f'gcjax: skipping bad example: {record[sources.BAD]}'
              f'{" (further skips are only counted)" if skipped[0] == _SHOW_SKIPS else ""}',
              file=sys.stderr)

  def _assemble(self, iters: dict[str, Iterator], skipped: list[int]
                ) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in sorted(iters):
      rows = [self._good(iters[name], name, skipped)
              for _ in range(self.local_batch)]
      for k in rows[0]:
        out[k] = np.stack([np.asarray(r[k]) for r in rows])
    return out

  def _open(self) -> dict[str, Iterator]:
    iters = {}
    for name in sorted(self.streams):
      it = iter(self.loader(name))
      if self._restored is not None:
        it.set_state(self._restored[name].encode())
      iters[name] = it
    return iters

  def sample_batch(self) -> pipeline.Batch:
    """This process's first `local_batch` good records, decoded here, as
    floats (for building the model; reads nothing the stream reads)."""
    out = {}
    for name in sorted(self.streams):
      s = self.streams[name]
      rows, i = [], 0
      while len(rows) < self.local_batch and i < len(s.source):
        r = s.source[i]
        for op in s.decode:
          r = op.map(r)
        if sources.BAD not in r:
          rows.append(r)
        i += 1
      if len(rows) < self.local_batch:
        raise errors.UserError(f'stream {name!r} has fewer than '
                               f'{self.local_batch} decodable records')
      for k in rows[0]:
        out[k] = np.stack([np.asarray(r[k]) for r in rows])
    return {k: pipeline.to_float(v) for k, v in out.items()}

  def iterate(self, start_step: int = 0
              ) -> Iterator[tuple[int, pipeline.Batch]]:
    """Yields (step, batch) from `start_step` on, forever.

    `start_step` only numbers the batches: where reading continues is the
    state given to `set_state` (or the start of the stream). A host thread
    prepares `prefetch` batches ahead; its errors are raised here.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, self.prefetch))
    stop = threading.Event()
    skipped = [self.skipped]

    def worker():
      try:
        iters = self._open()
        if self._states is None:
          self._states = {k: it.get_state().decode()
                          for k, it in iters.items()}
        while not stop.is_set():
          batch = self._assemble(iters, skipped)
          states = {k: it.get_state().decode() for k, it in iters.items()}
          item = (batch, states, skipped[0], None)
          while not stop.is_set():
            try:
              q.put(item, timeout=0.1)
              break
            except queue.Full:
              continue
      except BaseException as e:  # Handed to the consumer.
        while not stop.is_set():
          try:
            q.put((None, None, None, e), timeout=0.1)
            return
          except queue.Full:
            continue

    thread = threading.Thread(target=worker, daemon=True,
                              name='gcjax-stream')
    thread.start()
    step = start_step
    try:
      while True:
        batch, states, n_skipped, error = q.get()
        if error is not None:
          raise error
        self._states, self.skipped = states, n_skipped
        yield step, {k: pipeline.to_float(v) for k, v in batch.items()}
        step += 1
    finally:
      stop.set()
      thread.join(timeout=30)

  def shard_size(self, name: str = 'rows') -> int:
    """Records of stream `name` in this process's shard (one epoch)."""
    from grain._src.core import sharding
    start, end = sharding.even_split(len(self.streams[name].source),
                                     self.shard_options())
    return end - start

  def epoch_records(self, name: str = 'rows') -> Iterator[dict]:
    """This process's shard of stream `name` once (tests, benchmarks)."""
    it = iter(self.loader(name))
    for _ in range(self.shard_size(name)):
      yield next(it)

"""Tests for gcjax.data.pipeline on 8 fake CPU devices."""

import os

# Must be set before JAX initializes its backend (conftest.py does it too).
if '--xla_force_host_platform_device_count' not in os.environ.get(
    'XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8')

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.sharding import Mesh, PartitionSpec  # noqa: E402

from gcjax.data import pipeline  # noqa: E402


def _arrays(n=40, res=4):
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (n, res, res, 3), dtype=np.uint8)
  # Row i is identifiable: pixel [0, 0, 0] of src is i, label is i.
  img[:, 0, 0, 0] = np.arange(n)
  return dict(src=img, tgt=img.copy(), label=np.arange(n, dtype=np.int32))


def _ids(batch):
  return batch['label'].tolist()


def test_eight_devices():
  assert jax.device_count() == 8


def test_batch_dtypes_and_range():
  b = pipeline.Batcher(_arrays(), global_batch=8, seed=0)
  out = b.batch(0)
  assert out['src'].shape == (8, 4, 4, 3) and out['src'].dtype == np.float32
  assert out['label'].dtype == np.int32
  assert -1.0 <= out['src'].min() and out['src'].max() <= 1.0
  # Pairs stay aligned; uint8 -> [-1, 1] exactly.
  np.testing.assert_array_equal(out['src'], out['tgt'])
  idx = out['label']
  np.testing.assert_allclose(out['src'][:, 0, 0, 0], idx * 2 / 255 - 1,
                             atol=1e-6)


def test_epochs_are_permutations_and_depend_on_seed():
  b = pipeline.Batcher(_arrays(), global_batch=8, seed=3)
  assert b.steps_per_epoch == 5
  for epoch in range(2):
    seen = sum((_ids(b.batch(s)) for s in range(5 * epoch, 5 * epoch + 5)),
               [])
    assert sorted(seen) == list(range(40))
  assert _ids(b.batch(0)) != _ids(b.batch(5))  # Reshuffled per epoch.
  other = pipeline.Batcher(_arrays(), global_batch=8, seed=4)
  assert _ids(other.batch(0)) != _ids(b.batch(0))
  ordered = pipeline.Batcher(_arrays(), global_batch=8, seed=3, shuffle=False)
  assert _ids(ordered.batch(1)) == list(range(8, 16))


def test_resume_reads_the_same_batches():
  arrays = _arrays()
  full = pipeline.Batcher(arrays, 8, seed=7, flip=True, jitter=1)
  gen0 = full.iterate(0)
  first = [next(gen0) for _ in range(12)]
  gen0.close()
  resumed = pipeline.Batcher(arrays, 8, seed=7, flip=True, jitter=1)
  gen = resumed.iterate(start_step=7, prefetch=3)
  for k in range(7, 12):
    step, batch = next(gen)
    assert step == k and first[k][0] == k
    for key in batch:
      np.testing.assert_array_equal(batch[key], first[k][1][key])
  gen.close()


def test_process_shards_concatenate_to_global_batch():
  arrays = _arrays()
  whole = pipeline.Batcher(arrays, 16, seed=1, flip=True, jitter=1)
  shards = [pipeline.Batcher(arrays, 16, seed=1, process_index=p,
                             process_count=2, flip=True, jitter=1)
            for p in range(2)]
  for step in (0, 2, 5):
    parts = [s.batch(step) for s in shards]
    assert parts[0]['src'].shape[0] == 8
    for key in arrays:
      np.testing.assert_array_equal(
          np.concatenate([p[key] for p in parts]), whole.batch(step)[key])


def test_flip_and_jitter_keep_pairs_aligned():
  arrays = _arrays(n=16, res=6)
  plain = pipeline.Batcher(arrays, 16, seed=2, shuffle=False).batch(0)
  flipped = pipeline.Batcher(arrays, 16, seed=2, shuffle=False,
                             flip=True).batch(0)
  np.testing.assert_array_equal(flipped['src'], flipped['tgt'])
  mirrored = [np.array_equal(flipped['src'][i], plain['src'][i, :, ::-1])
              for i in range(16)]
  kept = [np.array_equal(flipped['src'][i], plain['src'][i])
          for i in range(16)]
  assert all(m or k for m, k in zip(mirrored, kept, strict=True))
  assert 0 < sum(mirrored) < 16
  moved = pipeline.Batcher(arrays, 16, seed=2, shuffle=False,
                           jitter=2).batch(0)
  np.testing.assert_array_equal(moved['src'], moved['tgt'])
  assert moved['src'].shape == plain['src'].shape
  assert not np.array_equal(moved['src'], plain['src'])


def test_unaligned_lengths_stream_independently():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (12, 2, 2, 1), np.uint8)
  b = rng.integers(0, 256, (5, 2, 2, 1), np.uint8)
  a[:, 0, 0, 0], b[:, 0, 0, 0] = np.arange(12), np.arange(5)
  batcher = pipeline.Batcher(dict(a=a, b=b), 4, seed=0, device_count=1)
  assert batcher.steps_per_epoch == 3
  ids = {k: [] for k in 'ab'}
  for step in range(3):
    for k, v in batcher.batch(step).items():
      ids[k] += np.round((v[:, 0, 0, 0] + 1) * 255 / 2).astype(int).tolist()
  assert sorted(ids['a']) == list(range(12))
  # b's 12 draws: two full permutations of its 5 rows, then 2 more.
  assert sorted(ids['b'][:5]) == sorted(ids['b'][5:10]) == list(range(5))


def test_keep_remainder_tops_up_last_batch():
  b = pipeline.Batcher(_arrays(n=20), 8, seed=0, drop_remainder=False)
  assert b.steps_per_epoch == 3
  seen = sum((_ids(b.batch(s)) for s in range(3)), [])
  assert len(seen) == 24 and set(seen) == set(range(20))
  small = pipeline.Batcher(_arrays(n=5), 8, seed=0, drop_remainder=False)
  assert small.batch(0)['src'].shape[0] == 8


def test_errors_name_the_numbers():
  with pytest.raises(ValueError, match='global batch 12 .* device count 8'):
    pipeline.Batcher(_arrays(), 12, seed=0)
  with pytest.raises(ValueError, match='40 rows, fewer than one global batch '
                     'of 48'):
    pipeline.Batcher(_arrays(), 48, seed=0)
  with pytest.raises(ValueError, match='empty dataset'):
    pipeline.Batcher(dict(x=np.zeros((0, 2), np.uint8)), 8, seed=0)
  with pytest.raises(ValueError, match='at least one key'):
    pipeline.Batcher({}, 8, seed=0)
  with pytest.raises(ValueError, match='process count 3'):
    pipeline.Batcher(_arrays(), 8, seed=0, process_count=3)


def test_iterate_raises_worker_errors():
  b = pipeline.Batcher(_arrays(), 8, seed=0)
  gen = b.iterate(start_step=-1)
  with pytest.raises(ValueError, match='step must be >= 0'):
    next(gen)


def test_to_global_shards_over_eight_devices():
  mesh = Mesh(np.array(jax.devices()), ('data',))
  batch = pipeline.Batcher(_arrays(), 16, seed=0).batch(3)
  out = pipeline.to_global(batch, mesh)
  assert out['src'].shape == (16, 4, 4, 3)
  assert out['src'].sharding.spec == PartitionSpec('data')
  assert len(out['src'].addressable_shards) == 8
  assert out['src'].addressable_shards[0].data.shape == (2, 4, 4, 3)
  for key in batch:
    np.testing.assert_array_equal(np.asarray(out[key]), batch[key])
  with pytest.raises(ValueError, match='global batch 4 is not divisible by '
                     'the 8 devices'):
    pipeline.to_global(dict(x=np.zeros((4, 2), np.float32)), mesh)
  with pytest.raises(ValueError, match="no axis 'batch'"):
    pipeline.to_global(batch, mesh, axis='batch')


def test_eval_batches_pad_and_mask():
  arrays = _arrays(n=19)
  batches = list(pipeline.eval_batches(arrays, 8))
  assert len(batches) == 3
  assert all(b['src'].shape == (8, 4, 4, 3) for b, _ in batches)
  masks = np.concatenate([m for _, m in batches])
  assert masks.sum() == 19 and not masks[19:].any()
  real = np.concatenate([b['label'][m] for b, m in batches])
  np.testing.assert_array_equal(real, np.arange(19))
  halves = [list(pipeline.eval_batches(arrays, 8, p, 2)) for p in range(2)]
  assert sum(m.sum() for h in halves for _, m in h) == 19
  np.testing.assert_array_equal(
      np.concatenate([halves[0][2][0]['label'], halves[1][2][0]['label']]),
      batches[2][0]['label'])

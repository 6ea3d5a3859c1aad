"""Streaming input (gcjax.data.streaming): same examples as in memory,
per-process shards, bad records, TFDS ArrayRecord, and exact resume."""

import collections
import io
import json
import os
import subprocess
import sys

import chex
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import pix2pix_gan
from gcjax import checkpoint as ckpt_lib
from gcjax import errors, train
from gcjax.data import folders, sources, streaming
from gcjax.data import tfds as gtfds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pair_image(i, w=8):
  """An A|B image [w, 2w, 3] whose pixels identify `i`."""
  rng = np.random.default_rng(i)
  x = rng.integers(0, 256, (w, 2 * w, 3), dtype=np.uint8)
  x[0, 0] = i
  return x


def _folder(root, n, bad=(), w=8):
  os.makedirs(root, exist_ok=True)
  for i in range(n):
    Image.fromarray(_pair_image(i, w)).save(os.path.join(root, f'{i:03d}.png'))
  for name in bad:
    with open(os.path.join(root, name), 'wb') as f:
      f.write(b'\x89PNG\r\n\x1a\n not really a png')
  return root


def _rows(batches, keys):
  """Multiset of rows (bytes of each key's row, concatenated)."""
  out = collections.Counter()
  for b in batches:
    for r in range(len(b[keys[0]])):
      out[b''.join(np.ascontiguousarray(b[k][r]).tobytes() for k in keys)] += 1
  return out


def _u8(batch):
  """Float [-1, 1] batch -> the uint8 images it was made from."""
  return {k: np.round((v + 1) * 127.5).astype(np.uint8)
          for k, v in batch.items()}


def _epoch(streamer, n_steps):
  it = streamer.iterate(0)
  try:
    return [next(it)[1] for _ in range(n_steps)]
  finally:
    it.close()


@pytest.mark.parametrize('workers', [0, 1])
def test_folder_stream_yields_the_in_memory_examples(tmp_path, workers):
  path = _folder(str(tmp_path / 'pairs'), 12)
  memory = folders.load_paired_folder(path, resolution=8)
  s = streaming.Streamer(
      sources.streams('paired_folder', 'train', {'path': path,
                                                 'resolution': 8}, 0),
      global_batch=4, seed=3, workers=workers)
  got = [_u8(b) for b in _epoch(s, 3)]
  assert _rows(got, ['src', 'tgt']) == _rows([memory], ['src', 'tgt'])
  # Shuffled: not the stored order.
  order = [int(b['src'][r, 0, 0, 0]) for b in got for r in range(4)]
  assert sorted(order) == list(range(12)) and order != list(range(12))


def test_unpaired_folders_stream_each_domain(tmp_path):
  root = tmp_path / 'h2z'
  for side, n in (('A', 6), ('B', 4)):
    d = root / f'train{side}'
    os.makedirs(d)
    for i in range(n):
      Image.fromarray(_pair_image(10 * (side == 'B') + i)[:, :8]).save(
          d / f'{i}.png')
  memory = folders.load_unpaired_folders(str(root), 'train', resolution=8)
  s = streaming.Streamer(
      sources.streams('unpaired_folders', 'train',
                      {'root': str(root), 'resolution': 8}, 0),
      global_batch=2, seed=0)
  got = _epoch(s, 6)   # 12 rows per domain: two epochs of A, three of B
  for k, n in (('a', 6), ('b', 4)):
    seen = _rows([_u8(b) for b in got], [k])
    mem = _rows([memory], [k])
    assert set(seen) == set(mem) and sum(seen.values()) == 12, k
    assert all(c == 12 // n for c in seen.values()), k


def test_bad_record_error_names_the_file(tmp_path):
  path = _folder(str(tmp_path / 'p'), 5, bad=['002_broken.png'])
  s = streaming.Streamer(
      sources.streams('paired_folder', 'train', {'path': path,
                                                 'resolution': 8}, 0),
      global_batch=6, seed=0)
  with pytest.raises(errors.UserError, match=r'002_broken\.png.*'
                     r'on_bad_example=skip'):
    _epoch(s, 1)


def test_bad_record_skip_counts_and_drops_it(tmp_path, capsys):
  path = _folder(str(tmp_path / 'p'), 5, bad=['002_broken.png'])
  s = streaming.Streamer(
      sources.streams('paired_folder', 'train', {'path': path,
                                                 'resolution': 8}, 0),
      global_batch=5, seed=0, on_bad='skip', shuffle=False)
  it = s.iterate(0)
  for epoch in (1, 2):   # stored order: the bad file is the 4th record
    batch = _u8(next(it)[1])
    assert sorted(batch['src'][:, 0, 0, 0]) == [0, 1, 2, 3, 4]
    assert s.skipped == epoch
    assert json.loads(s.get_state())['skipped'] == epoch
  it.close()
  assert '002_broken.png' in capsys.readouterr().err


def test_auto_streams_only_what_exceeds_max_memory(tmp_path):
  path = _folder(str(tmp_path / 'p'), 4)
  d = ml_collections.ConfigDict({
      'name': 'paired_folder', 'train_split': 'train', 'train_limit': 0,
      'args': {'path': path, 'resolution': 8}, 'streaming': 'auto',
      'max_memory_gb': 4 * 2 * 8 * 8 * 3 / 2**30})   # exactly the split
  assert not streaming.enabled(d)
  d.args.resolution = 9
  assert streaming.enabled(d)
  d.streaming = 'off'
  assert not streaming.enabled(d)
  d.streaming = 'maybe'
  with pytest.raises(errors.UserError, match='data.streaming'):
    streaming.enabled(d)


# --------------------------------------------------------------------------
# Two processes on loopback.

_SHARD_SCRIPT = '''
import json, sys
import jax
import numpy as np
from gcjax.data import sources, streaming
def main():
  jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
  arrays = {'id': np.arange(11, dtype=np.int32)}
  s = streaming.Streamer({'rows': sources.Stream(sources.Rows(arrays))},
                         global_batch=2, seed=5,
                         process_index=jax.process_index(),
                         process_count=jax.process_count())
  ids = [int(r['id']) for r in s.epoch_records()]
  with open(sys.argv[3], 'w') as f:
    json.dump(ids, f)
  jax.distributed.shutdown()
if __name__ == '__main__':
  main()
'''


def test_two_processes_read_disjoint_shards_covering_the_split(tmp_path):
  from subprocess_runs import free_port, subprocess_env
  script = tmp_path / 'shard.py'
  script.write_text(_SHARD_SCRIPT)
  env = subprocess_env(devices=1)
  addr = f'127.0.0.1:{free_port()}'
  procs = [subprocess.Popen(
      [sys.executable, str(script), addr, str(i), str(tmp_path / f'{i}.json')],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
      for i in range(2)]
  for p in procs:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out.decode()[-3000:]
  shards = [json.loads((tmp_path / f'{i}.json').read_text()) for i in range(2)]
  assert all(shards) and not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == list(range(11))


# --------------------------------------------------------------------------
# A TFDS ArrayRecord set built here.

def _png(x):
  buf = io.BytesIO()
  Image.fromarray(x).save(buf, format='PNG')
  buf.seek(0)
  return buf


class GcjaxStreamPairs(tfds.core.GeneratorBasedBuilder):
  """Six RGB input / target pairs; the target's pixel (0, 0) is the id."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    img = tfds.features.Image(shape=(None, None, 3))
    return tfds.core.DatasetInfo(builder=self, features=tfds.features
                                 .FeaturesDict({'a': img, 'b': img}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    for i in range(6):
      x = _pair_image(i, 8)
      yield i, {'a': _png(x[:, :8]), 'b': _png(x[:, 8:])}


def test_tfds_array_record_stream_matches_in_memory(tmp_path):
  builder = GcjaxStreamPairs(data_dir=str(tmp_path),
                             file_format='array_record')
  builder.download_and_prepare()
  args = {'name': 'gcjax_stream_pairs', 'data_dir': str(tmp_path),
          'keys': {'src': 'a', 'tgt': 'b'}, 'resolution': 8}
  memory = gtfds.load_tfds(split='train', **args)
  s = streaming.Streamer(sources.streams('tfds', 'train', args, 0),
                         global_batch=3, seed=1)
  got = [_u8(b) for b in _epoch(s, 2)]
  assert _rows(got, ['src', 'tgt']) == _rows([memory], ['src', 'tgt'])
  assert len(_rows(got, ['src'])) == 6


# --------------------------------------------------------------------------
# The trainer: resume equals uninterrupted, with streaming.

def _stream_config(path):
  c = pix2pix_gan.get_config('smoke')
  with c.unlocked():
    c.data.name = 'paired_folder'
    c.data.args = ml_collections.ConfigDict({'path': path, 'resolution': 16})
    c.data.streaming = 'on'
    c.data.workers = 1
    c.data.on_bad_example = 'skip'
    c.data.flip = True
  c.lock()
  return c


@pytest.fixture(scope='module')
def stream_run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('stream'))
  path = os.path.join(root, 'data')
  _folder(os.path.join(path, 'train'), 20, bad=['007_bad.png'], w=16)
  _folder(os.path.join(path, 'test'), 8, w=16)
  workdir = os.path.join(root, 'full')
  return path, workdir, train.run(_stream_config(path), workdir)


def _final(workdir):
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'))
  step = ck.latest_step()
  ck.close()
  import orbax.checkpoint as ocp
  return step, ocp.StandardCheckpointer().restore(
      os.path.join(workdir, 'checkpoints', str(step), 'state'))


def test_streaming_resume_equals_uninterrupted(stream_run, tmp_path):
  path, full_dir, full_res = stream_run
  assert full_res['_run']['streaming'] is True
  skipped = full_res['_run']['bad_examples_skipped']
  assert skipped >= 1
  with open(os.path.join(full_dir, 'results.json')) as f:
    assert json.load(f)['_run']['bad_examples_skipped'] == skipped
  # The input state is a file of the step, covered by its digest record.
  with open(os.path.join(full_dir, 'checkpoints', '4', 'gcjax_sha256.json')
            ) as f:
    assert 'data/process_0-of-1.json' in json.load(f)['files']
  c = _stream_config(path)
  with c.unlocked():
    c.run_steps = 1            # "preempted" after 1 step, then twice more
  d = str(tmp_path)
  for _ in range(2):
    assert 'stopped_at' in train.run(c, d)['_run']
  with c.unlocked():
    c.run_steps = 0
  res = train.run(c, d)
  assert res['_run']['resumed_from'] == 2
  _, full = _final(full_dir)
  _, resumed = _final(d)
  chex.assert_trees_all_equal(full, resumed)
  assert res['_run']['bad_examples_skipped'] == skipped


def test_in_memory_checkpoint_is_not_resumed_as_a_stream(stream_run,
                                                          tmp_path):
  del stream_run   # (shares its compiled programs)
  path = str(tmp_path / 'data')
  _folder(os.path.join(path, 'train'), 8, w=16)
  _folder(os.path.join(path, 'test'), 8, w=16)
  c = _stream_config(path)
  with c.unlocked():
    c.data.streaming = 'off'
    c.run_steps = 1
  workdir = str(tmp_path / 'run')
  assert 'stopped_at' in train.run(c, workdir)['_run']
  with pytest.raises(errors.UserError, match='no streaming-input state'):
    train.run(_stream_config(path), workdir)

"""Hostile inputs at the trainer: clear errors, and the workdir left intact.

Every test points ``train.run`` (or the CLI) at the workdir of an earlier
run (a checkpoint at step 2 and its config.json) with one bad input, checks
that the error names the file/key and what was expected, and that no file
of the earlier run changed. None of them compiles a train step: each input
is refused before that. Loader-level cases live in data_test.py and
assets_test.py (see docs/multihost.md, "Robustness").
"""

import hashlib
import io
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import pix2pix_gan
from gcjax import checkpoint as ckpt_lib
from gcjax import methods as methods_lib
from gcjax import sharding, train
from gcjax.data import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  c = pix2pix_gan.get_config('smoke')
  c.lock()
  return c


def _snapshot(workdir: str) -> dict[str, str]:
  """Relative path -> sha256 of every file under ``workdir``."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(
            f.read()).hexdigest()
  return out


@pytest.fixture(scope='module')
def earlier_run(tmp_path_factory):
  """A workdir as a run of the smoke config leaves it after 2 steps.

  The state is the config's abstract state filled with zeros (saving it
  needs no train-step compile); restoring it works like a real one.
  """
  workdir = str(tmp_path_factory.mktemp('earlier_run'))
  c = _config()
  mesh = sharding.create_mesh()
  arrays = train._load_split(c, c.data.train_split, c.data.train_limit)
  batcher = pipeline.Batcher(arrays, c.data.batch_size, seed=0)
  method = methods_lib.get(c.method).make(
      c, pipeline.to_global(batcher.batch(0), mesh))
  abstract = jax.eval_shape(method.init, jax.random.key(0))
  state = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'))
  ck.save(2, state, {'skipped': 0})
  ck.close()
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(c.to_json_best_effort(indent=2))
  return workdir, _snapshot(workdir)


def _with(c, **updates):
  c = ml_collections.ConfigDict(c.to_dict())  # unlocked copy
  for key, value in updates.items():
    node = c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def _folder_data(path):
  return ml_collections.ConfigDict({
      'name': 'paired_folder', 'train_split': 'train', 'test_split': 'test',
      'batch_size': 8, 'seed': 0, 'flip': False, 'jitter': 0,
      'args': {'path': str(path), 'resolution': 16},
      'train_limit': 0, 'test_limit': 0})


def _run_refused(earlier_run, config, error, match):
  workdir, before = earlier_run
  with pytest.raises(error, match=match):
    train.run(config, workdir)
  assert _snapshot(workdir) == before


def test_truncated_image_in_dataset(earlier_run, tmp_path):
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (16, 32, 3), np.uint8)).save(
      tmp_path / 'a.png')
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (16, 32, 3), np.uint8)).save(
      buf, format='PNG')
  (tmp_path / 'b.png').write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
  c = _with(_config(), data=_folder_data(tmp_path))
  _run_refused(earlier_run, c, ValueError, r'cannot read image .*b\.png')


def test_empty_dataset_folder(earlier_run, tmp_path):
  (tmp_path / 'train').mkdir()
  (tmp_path / 'train' / 'notes.txt').write_text('no images here')
  c = _with(_config(), data=_folder_data(tmp_path))
  _run_refused(earlier_run, c, ValueError,
               r'image folder .*train holds no image \(\.png')


def test_wrong_channel_count(earlier_run):
  # (limit: the loader checks channels after its Canny pass over the split.)
  c = _with(_config(), **{'data.args.channels': 2, 'data.args.limit': 16})
  _run_refused(earlier_run, c, ValueError, r'channels must be 1 or 3, got 2')


def test_wrong_image_size(earlier_run):
  # The U-Net halves the side down to a 1x1 bottleneck: 12 cannot be.
  c = _with(_config(), **{'data.args.resolution': 12})
  _run_refused(earlier_run, c, ValueError,
               r'U-Net input side must be a power of two, got 12x12')


def test_checkpoint_of_other_data_shape(earlier_run):
  # The earlier run had 1-channel images; 3 channels change the first and
  # last convolutions: the restore names the leaf and both shapes.
  c = _with(_config(), **{'data.args.channels': 3})
  _run_refused(earlier_run, c, ValueError,
               r'Checkpoint .*checkpoints/2: gen\.params\.down0_conv\.kernel '
               r'has shape \(4, 4, 1, 4\), the current config expects '
               r'\(4, 4, 3, 4\)')


def test_config_value_of_wrong_type(earlier_run):
  workdir, before = earlier_run
  proc = subprocess.run(
      [sys.executable, '-m', 'gcjax.main',
       '--config=configs/pix2pix_gan.py:smoke', f'--workdir={workdir}',
       '--config.total_steps=many'],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode != 0
  assert 'total_steps' in proc.stderr and 'many' in proc.stderr
  assert _snapshot(workdir) == before

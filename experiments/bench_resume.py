"""Resume overhead, checkpoint save/restore time, and kill -9 resume checks.

Usage:
  python -m experiments.bench_resume save      # default VEM state save time
  python -m experiments.bench_resume resume    # restart -> first new step
  python -m experiments.bench_resume kills --n 10   # random kill points
  python -m experiments.bench_resume digest    # checkpoint digest overhead

``save`` builds the state of ``configs/pix2pix_vem.py`` (default preset) and
times ``Checkpointer.save`` and ``restore``. ``resume`` runs the VEM smoke
config for one step, then restarts it and measures the time from launching
the process to the first new step (its checkpoint on disk) and the trainer's
own restart-to-first-step figure, with a cold and a warm persistent XLA
compilation cache. ``kills`` SIGKILLs the pix2pix_gan smoke run (12 steps,
a checkpoint every step) ``n`` times at random moments, restarts it, and
compares the final state bitwise with an uninterrupted run. ``digest``
times ``Checkpointer.save`` and ``restore_latest`` of the default VEM state
with and without the SHA-256 record (A/B interleaved, same files, warm page
cache) and writes ``experiments/results/checkpoint_digest.md``. Figures are
printed as a markdown table.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(cache: str, devices: int = 8) -> dict[str, str]:
  env = dict(os.environ)
  env.update({'XLA_FLAGS': f'--xla_force_host_platform_device_count='
                           f'{devices}',
              'JAX_PLATFORMS': 'cpu', 'JAX_COMPILATION_CACHE_DIR': cache,
              'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'})
  return env


def _load_config(name: str, preset: str | None):
  import importlib
  return importlib.import_module(f'configs.{name}').get_config(preset)


def _vem_state():
  """(state, abstract, shardings) of the default VEM config, untrained."""
  import jax

  from gcjax import methods as methods_lib
  from gcjax import sharding, train
  from gcjax.data import pipeline
  c = _load_config('pix2pix_vem', None)
  mesh = sharding.create_mesh()
  arrays = train._load_split(c, c.data.train_split, 64)
  batcher = pipeline.Batcher(arrays, c.data.batch_size, seed=0)
  method = methods_lib.get(c.method).make(
      c, pipeline.to_global(batcher.batch(0), mesh))
  abstract = jax.eval_shape(method.init, jax.random.key(0))
  state_sh = sharding.replicate_tree(abstract, mesh)
  state = jax.jit(method.init, out_shardings=state_sh)(jax.random.key(0))
  jax.block_until_ready(state)
  return state, abstract, state_sh


def bench_digest(repeats: int) -> None:
  """Save/restore of the default VEM state with and without the digest."""
  from unittest import mock

  import jax
  import numpy as np

  from gcjax import checkpoint as ckpt_lib
  from gcjax import digest
  state, abstract, state_sh = _vem_state()
  nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
  tmp = tempfile.mkdtemp(prefix='gcjax_bench_digest_')
  ck = ckpt_lib.Checkpointer(tmp, max_to_keep=2)
  t = {k: [] for k in ('save', 'save_plain', 'restore', 'restore_plain',
                       'record', 'check')}

  def no_record(root):
    raise digest.NoRecord(root)

  def timed(key, fn):
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    t[key].append(time.perf_counter() - t0)
    return out

  step = 0
  for i in range(repeats + 1):   # the first round warms up, not counted
    for with_digest in ((True, False) if i % 2 else (False, True)):
      step += 1
      if with_digest:
        timed('save', lambda s=step: ck.save(s, state, {'skipped': 0}))
        timed('restore', lambda: ck.restore_latest(abstract, state_sh).state)
        timed('check', lambda s=step: digest.check(ck.step_dir(s)))
        timed('record', lambda s=step: digest.write_record(ck.step_dir(s)))
      else:
        with mock.patch.object(digest, 'write_record', lambda root: None), \
             mock.patch.object(digest, 'check', no_record):
          timed('save_plain',
                lambda s=step: ck.save(s, state, {'skipped': 0}))
          timed('restore_plain',
                lambda: ck.restore_latest(abstract, state_sh).state)
    if i == 0:
      for v in t.values():
        v.clear()
  n_files = len(digest.tree_digests(ck.step_dir(step)))
  ck.close()
  shutil.rmtree(tmp)
  med = {k: 1e3 * float(np.median(v)) for k, v in t.items()}

  def row(name, plain, full, part):
    diff = med[full] - med[plain]
    return (f'| {name} | {med[plain]:.0f} | {med[full]:.0f} | '
            f'{diff:+.0f} ({100 * diff / med[plain]:+.1f}%) | '
            f'{med[part]:.0f} ({100 * med[part] / med[plain]:.1f}%) |')

  text = '\n'.join([
      '# Checkpoint digest overhead (default VEM state)', '',
      f'`python -m experiments.bench_resume digest --repeats {repeats}`: '
      f'the untrained state of `configs/pix2pix_vem.py` (default preset), '
      f'{nbytes / 2**20:.1f} MiB in {len(jax.tree.leaves(state))} arrays, '
      f'{n_files} files per checkpoint, {jax.device_count()} '
      f'{jax.default_backend()} device(s), {os.cpu_count()} CPU cores. '
      f'Medians of {repeats} rounds, with and without the SHA-256 record '
      'interleaved; files in the page cache (a resume after a reboot '
      'reads them from disk once more for the check).', '',
      '| operation | without digest (ms) | with digest (ms) | difference | '
      'digest step alone (ms, % of without) |', '|---|---|---|---|---|',
      row('save (`Checkpointer.save`)', 'save_plain', 'save', 'record'),
      row('restore (`restore_latest`)', 'restore_plain', 'restore',
          'check'),
      ''])
  print(text)
  os.makedirs(os.path.join(ROOT, 'experiments', 'results'), exist_ok=True)
  with open(os.path.join(ROOT, 'experiments', 'results',
                         'checkpoint_digest.md'), 'w') as f:
    f.write(text)


def bench_save(repeats: int) -> None:
  import jax
  import numpy as np

  from gcjax import checkpoint as ckpt_lib
  state, abstract, state_sh = _vem_state()
  nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
  tmp = tempfile.mkdtemp(prefix='gcjax_bench_save_')
  ck = ckpt_lib.Checkpointer(tmp, max_to_keep=2)
  saves, restores = [], []
  for i in range(repeats):
    t = time.perf_counter()
    ck.save(i + 1, state, {'skipped': 0})
    saves.append(time.perf_counter() - t)
    t = time.perf_counter()
    restored = ck.restore_latest(abstract, state_sh).state
    jax.block_until_ready(restored)
    restores.append(time.perf_counter() - t)
  ck.close()
  shutil.rmtree(tmp)
  print(f'| default VEM state | {nbytes / 2**20:.1f} MiB, '
        f'{len(jax.tree.leaves(state))} arrays, {jax.device_count()} devices '
        f'|\n| save (median of {repeats}) | {np.median(saves):.3f} s '
        f'(first {saves[0]:.3f} s) |\n| restore (median) | '
        f'{np.median(restores):.3f} s |')


def _scalar(workdir: str, tag: str) -> list[float]:
  """Values of one TensorBoard scalar tag (reads the TFRecord framing)."""
  from tensorboardX.proto import event_pb2
  out = []
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.*'))):
    data = open(path, 'rb').read()
    pos = 0
    while pos + 12 <= len(data):
      (n,) = struct.unpack('<Q', data[pos:pos + 8])
      ev = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
      pos += 12 + n + 4
      out += [v.simple_value for v in ev.summary.value if v.tag == tag]
  return out


def _steps(workdir: str) -> list[int]:
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if (
      os.path.isdir(d)) else []


def bench_resume(config: str) -> None:
  tmp = tempfile.mkdtemp(prefix='gcjax_bench_resume_')
  rows = []
  for cache_state in ('cold', 'warm'):
    cache = os.path.join(tmp, 'cache')
    if cache_state == 'cold':
      shutil.rmtree(cache, ignore_errors=True)
    workdir = os.path.join(tmp, f'run_{cache_state}')
    cmd = [sys.executable, '-m', 'gcjax.main', f'--config={config}',
           f'--workdir={workdir}', '--config.run_steps=1',
           '--config.ckpt_every=1', '--config.total_steps=10']
    subprocess.run(cmd, cwd=ROOT, env=_env(cache), check=True,
                   capture_output=True)
    if cache_state == 'cold':
      shutil.rmtree(cache, ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(cache),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while 2 not in _steps(workdir) and proc.poll() is None:
      time.sleep(0.02)
    wall = time.perf_counter() - t
    proc.wait()
    inner = _scalar(workdir, 'time/first_step_s')[-1]
    rows.append(f'| {config}, {cache_state} compile cache | {wall:.1f} s '
                f'| {inner:.1f} s |')
  shutil.rmtree(tmp)
  print('| restart | launch -> first new step on disk | trainer: restore '
        '-> first step done |\n| --- | --- | --- |')
  print('\n'.join(rows))


def bench_kills(n: int, seed: int) -> None:
  import chex
  import jax
  import orbax.checkpoint as ocp
  from etils import epath

  def final(workdir):
    path = epath.Path(workdir) / 'checkpoints' / str(_steps(workdir)[-1])
    tree = ocp.PyTreeCheckpointHandler().metadata(path / 'state').tree
    dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=dev), tree)
    return jax.device_get(ocp.StandardCheckpointer().restore(
        path / 'state', target))

  tmp = tempfile.mkdtemp(prefix='gcjax_bench_kills_')
  env = _env(os.path.join(tmp, 'cache'))

  def cmd(workdir):
    return [sys.executable, '-m', 'gcjax.main',
            '--config=configs/pix2pix_gan.py:smoke', f'--workdir={workdir}',
            '--config.total_steps=12', '--config.ckpt_every=1',
            '--config.log_every=1', '--config.keep_ckpts=3']

  ref = os.path.join(tmp, 'ref')
  subprocess.run(cmd(ref), cwd=ROOT, env=env, check=True,
                 capture_output=True)
  want = final(ref)
  rng = random.Random(seed)
  workdir = os.path.join(tmp, 'killed')
  hits = []
  for _ in range(n):
    before = _steps(workdir)
    proc = subprocess.Popen(cmd(workdir), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kind = rng.choice(('launch', 'save', 'between'))
    t0 = time.perf_counter()
    delay = rng.uniform(0.5, 8.0)
    while proc.poll() is None:
      now = _steps(workdir)
      d = os.path.join(workdir, 'checkpoints')
      tmps = [x for x in os.listdir(d) if 'tmp' in x] if os.path.isdir(
          d) else []
      new = [s for s in now if s not in before]
      if kind == 'launch' and time.perf_counter() - t0 > delay:
        break
      if kind == 'save' and new and tmps:
        break
      if kind == 'between' and new:
        time.sleep(rng.uniform(0, 0.5))
        break
    if proc.poll() is None:
      proc.kill()
    proc.wait()
    after = _steps(workdir)
    hits.append(f'{kind}@{after[-1] if after else 0}')
    if after and after[-1] == 12:
      break
  subprocess.run(cmd(workdir), cwd=ROOT, env=env, check=True,
                 capture_output=True)
  chex.assert_trees_all_equal(final(workdir), want)
  shutil.rmtree(tmp)
  print(f'| kill points (kind@last finalized step) | {len(hits)}: '
        f'{", ".join(hits)} |\n| final state vs uninterrupted | bitwise '
        'equal |')


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('what', choices=('save', 'resume', 'kills', 'digest'))
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--config', default='configs/pix2pix_vem.py:smoke')
  p.add_argument('--n', type=int, default=10)
  p.add_argument('--seed', type=int, default=0)
  a = p.parse_args()
  if a.what == 'save':
    bench_save(a.repeats)
  elif a.what == 'digest':
    bench_digest(a.repeats)
  elif a.what == 'resume':
    bench_resume(a.config)
  else:
    bench_kills(a.n, a.seed)


if __name__ == '__main__':
  main()

"""Input pipeline: peak memory in memory vs streaming, decode rate, input wait.

Usage:
  python -m experiments.bench_input [--small 1000 --large 50000 --side 64]

Writes ``experiments/results/bench_input.md``. Three measurements:

1. **Peak RSS of a training run** over a synthetic pix2pix A|B folder of
   ``--small`` and ``--large`` pairs (JPEG files of 80x160, resized to
   ``--side``; see `_make_folder`), once with ``data.streaming=off``
   (the whole split decoded in RAM) and once with ``on`` (grain, 2 workers).
   The run is the pix2pix_gan smoke model (ngf 4) for ``--steps`` steps, in
   a child process on 1 CPU device; the parent samples the RSS of the child
   and of its grain workers every 0.2 s (the workers' RSS counts shared
   library pages once per process, so the tree sum overstates it).
2. **Decoded pairs/s** of `gcjax.data.streaming.Streamer` over the large
   folder with 0, 1 and 2 grain workers (global batch 32, after 2 warm-up
   batches; each pair is two images).
3. **Input-wait fraction** of the default VEM run (configs/pix2pix_vem.py,
   ``--vem_steps`` steps, only the image evaluator): the host time spent
   waiting for the next batch after the first step, over the loop's wall
   time (``results['_run']['time/input_wait_fraction']``), in memory and
   streaming.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'experiments', 'results', 'bench_input.md')
FILE_SIDE = 80          # stored halves are 80x80, resized to --side


def _env() -> dict[str, str]:
  env = dict(os.environ)
  env.update({'XLA_FLAGS': '--xla_force_host_platform_device_count=1',
              'JAX_PLATFORMS': 'cpu',
              'PYTHONPATH': ROOT + os.pathsep + env.get('PYTHONPATH', '')})
  return env


def _make_folder(root: str, n: int, distinct: int = 500) -> int:
  """root/train with n A|B JPEGs (FILE_SIDE x 2*FILE_SIDE) and root/test
  with 16; `distinct` different images written round-robin. Returns the
  bytes written."""
  from PIL import Image
  rng = np.random.default_rng(0)
  blobs = []
  yy, xx = np.mgrid[0:FILE_SIDE, 0:2 * FILE_SIDE]
  for i in range(distinct):
    base = (np.sin(xx / (3 + i % 7)) + np.cos(yy / (4 + i % 5))) * 60 + 128
    img = base[..., None] + rng.normal(0, 12, (FILE_SIDE, 2 * FILE_SIDE, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
        buf, format='JPEG', quality=90)
    blobs.append(buf.getvalue())
  total = 0
  for split, count in (('train', n), ('test', 16)):
    os.makedirs(os.path.join(root, split), exist_ok=True)
    for i in range(count):
      with open(os.path.join(root, split, f'{i:06d}.jpg'), 'wb') as f:
        f.write(blobs[i % distinct])
      total += len(blobs[i % distinct])
  return total


# ---- child: one training run -------------------------------------------

def _folder_config(path: str, streaming: str, steps: int, side: int):
  import ml_collections

  from configs import pix2pix_gan
  c = pix2pix_gan.get_config('smoke')
  with c.unlocked():
    c.data.name = 'paired_folder'
    c.data.args = ml_collections.ConfigDict({'path': path,
                                             'resolution': side})
    c.data.streaming = streaming
    c.data.workers = 2
    c.data.train_limit = 0
    c.data.test_limit = 16
    c.total_steps = steps
    c.log_every = c.ckpt_every = steps
    c.optim.g.decay_start = c.optim.d.decay_start = steps // 2
  return c


def _vem_config(streaming: str, steps: int):
  import ml_collections

  from configs import pix2pix_vem
  c = pix2pix_vem.get_config(None)
  with c.unlocked():
    c.data.streaming = streaming
    c.total_steps = steps
    c.log_every = c.ckpt_every = steps
    c.sample_every = 0
    c.evals = ml_collections.ConfigDict({'image': c.evals.image.to_dict()})
  return c


def _child(args) -> None:
  import resource

  from gcjax import train
  if args.kind == 'folder':
    c = _folder_config(args.path, args.streaming, args.steps, args.side)
  else:
    c = _vem_config(args.streaming, args.steps)
  c.lock()
  t0 = time.perf_counter()
  with tempfile.TemporaryDirectory() as workdir:
    res = train.run(c, workdir)
  run = res['_run']
  print('BENCH ' + json.dumps({
      'wall_s': time.perf_counter() - t0,
      'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'wait_fraction': run['time/input_wait_fraction'],
      'wait_s': run['time/input_wait_s'], 'loop_s': run['time/loop_s'],
      'first_step_s': run['first_step_s_after_start'],
      'streaming': bool(run.get('streaming', False))}), flush=True)


def _run_child(extra: list[str]) -> dict:
  """Runs a child training run; adds the sampled peak tree RSS (MiB)."""
  import psutil
  cmd = [sys.executable, '-m', 'experiments.bench_input', '--child', *extra]
  proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  parent = psutil.Process(proc.pid)
  peak_tree = 0
  lines: list[str] = []
  import threading
  reader = threading.Thread(
      target=lambda: lines.extend(proc.stdout), daemon=True)
  reader.start()
  while proc.poll() is None:
    try:
      procs = [parent, *parent.children(recursive=True)]
      peak_tree = max(peak_tree, sum(p.memory_info().rss for p in procs
                                     if p.is_running()))
    except psutil.Error:
      pass
    time.sleep(0.2)
  reader.join(timeout=10)
  out = [ln for ln in lines if ln.startswith('BENCH ')]
  if proc.returncode != 0 or not out:
    raise RuntimeError(f'child {extra} failed:\n' + ''.join(lines[-40:]))
  got = json.loads(out[-1][len('BENCH '):])
  got['peak_tree_mb'] = peak_tree / 2**20
  return got


# ---- decode rate ---------------------------------------------------------

def _decode_rate(path: str, side: int, workers: int, batches: int) -> float:
  from gcjax.data import sources, streaming
  s = streaming.Streamer(
      sources.streams('paired_folder', 'train',
                      {'path': path, 'resolution': side}, 0),
      global_batch=32, seed=0, workers=workers, prefetch=2)
  it = s.iterate(0)
  try:
    for _ in range(2):
      next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
      next(it)
    return batches * 32 / (time.perf_counter() - t0)
  finally:
    it.close()


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--kind', default='folder')
  p.add_argument('--path', default='')
  p.add_argument('--streaming', default='off')
  p.add_argument('--small', type=int, default=1000)
  p.add_argument('--large', type=int, default=50000)
  p.add_argument('--side', type=int, default=64)
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--vem_steps', type=int, default=36)
  p.add_argument('--decode_batches', type=int, default=30)
  p.add_argument('--root', default='')
  args = p.parse_args()
  if args.child:
    _child(args)
    return
  t_all = time.perf_counter()
  root = args.root or tempfile.mkdtemp(prefix='gcjax_bench_input_')
  lines = [f'# Input pipeline: memory, decode rate, input wait '
           f'({os.cpu_count()} CPU cores)', '']
  lines.append(
      'Machine: shared with about six other engineers running jobs at the '
      'same time (2 cores, 24 GB RAM in all), so the times and rates below '
      'are lower and noisier than on an idle machine; the memory figures '
      'are not affected by the load. Command: `nice -n 10 python -m '
      'experiments.bench_input ' + ' '.join(sys.argv[1:]) + '`.')
  lines.append('')
  try:
    folders = {}
    for n in (args.small, args.large):
      t0 = time.perf_counter()
      path = os.path.join(root, f'pairs_{n}')
      size = _make_folder(path, n)
      folders[n] = path
      print(f'folder {n}: {size / 2**20:.0f} MiB in '
            f'{time.perf_counter() - t0:.0f} s', file=sys.stderr)
    lines += [
        f'## 1. Peak memory of a training run ({args.steps} steps)', '',
        f'Synthetic pix2pix A|B folders: JPEG files of {FILE_SIDE}x'
        f'{2 * FILE_SIDE} (two {FILE_SIDE}x{FILE_SIDE} halves, ~'
        f'{os.path.getsize(os.path.join(folders[args.small], "train", "000000.jpg")) / 1024:.0f} KiB each), '
        f'resized to {args.side}x{args.side}; decoded, a pair takes '
        f'{2 * args.side * args.side * 3 / 1024:.0f} KiB. Model: the '
        'pix2pix_gan smoke generator/discriminator (ngf 4), batch 8, 1 CPU '
        'device. Streaming uses 2 grain workers.', '',
        '| pairs | decoded split (MiB) | input | peak RSS trainer (MiB) | '
        'peak RSS trainer + workers (MiB) | first step (s) | wall (s) |',
        '|---|---|---|---|---|---|---|']
    for n in (args.small, args.large):
      for mode in ('off', 'on'):
        r = _run_child(['--kind=folder', f'--path={folders[n]}',
                        f'--streaming={mode}', f'--steps={args.steps}',
                        f'--side={args.side}'])
        dec = n * 2 * args.side * args.side * 3 / 2**20
        lines.append(
            f'| {n} | {dec:.0f} | {"streaming" if mode == "on" else "in memory"}'
            f' | {r["maxrss_mb"]:.0f} | {r["peak_tree_mb"]:.0f} | '
            f'{r["first_step_s"]:.1f} | {r["wall_s"]:.0f} |')
        print(lines[-1], file=sys.stderr)
    lines += ['', f'## 2. Decoded pairs/s (streaming, {args.large}-pair '
              f'folder, global batch 32, {args.decode_batches} batches)', '',
              '| grain workers | pairs/s | images/s |', '|---|---|---|']
    for w in (0, 1, 2):
      rate = _decode_rate(folders[args.large], args.side, w,
                          args.decode_batches)
      lines.append(f'| {w} | {rate:.0f} | {2 * rate:.0f} |')
      print(lines[-1], file=sys.stderr)
    lines += ['', f'## 3. Input wait of the default VEM run '
              f'(configs/pix2pix_vem.py, {args.vem_steps} steps, batch 16, '
              '32x32 embedded edges2fashion)', '',
              'Host seconds spent waiting for the next batch after the first '
              'step, over the wall time of the loop after the first step '
              '(JAX dispatches asynchronously, so this bounds the device\'s '
              'wait from above).', '',
              '| input | loop (s) | s/step | waiting (s) | fraction |',
              '|---|---|---|---|---|']
    for mode in ('off', 'on'):
      r = _run_child(['--kind=vem', f'--streaming={mode}',
                      f'--steps={args.vem_steps}'])
      lines.append(
          f'| {"streaming (2 workers)" if mode == "on" else "in memory"} | '
          f'{r["loop_s"]:.1f} | {r["loop_s"] / (args.vem_steps - 1):.2f} | '
          f'{r["wait_s"]:.2f} | {100 * r["wait_fraction"]:.1f}% |')
      print(lines[-1], file=sys.stderr)
  finally:
    if not args.root:
      shutil.rmtree(root, ignore_errors=True)
  lines += ['', f'Total wall time of this benchmark: '
            f'{(time.perf_counter() - t_all) / 60:.1f} min.', '']
  os.makedirs(os.path.dirname(OUT), exist_ok=True)
  with open(OUT, 'w') as f:
    f.write('\n'.join(lines))
  print('\n'.join(lines))


if __name__ == '__main__':
  main()

"""Throughput and MFU of the OMGD + VEM train step on whatever device runs.

The step is ``configs/pix2pix_vem.py:paper``'s (wide U-Net ngf 64 + deep
U-Net ngf 16 teachers trained online, student ngf 16, ndf-128 multi-scale
PatchGAN, VGG16 style/perceptual losses, energy net with K = 10 Langevin
steps) on random 256x256 RGB batches; for each compute dtype
(``config.compute_dtype``) and batch size it reports:

* compile time, step time (median of ``--steps`` after one warm-up step),
  images/s;
* FLOPs per step from XLA's cost analysis of the same step compiled for the
  CPU backend (on GPU, convolutions become cuDNN calls the analysis does
  not count; on TPU it counts them, but one number for both keeps rows
  comparable);
* MFU = FLOPs / step time / (peak of the device kind x devices), with the
  peak from ``PEAKS`` (dense, no sparsity; the vendor's figure for the
  dtype); a device kind not in the table (a CPU) is rated by its measured
  f32 matmul rate (``metrics.cost.matmul_rate``, x2 FLOPs per MAC).

The batch with the highest images/s per dtype is marked. Run it when an
accelerator is lent:

  python -m experiments.bench_accel [--batches=4,8,16,32]
      [--dtypes=float32,bfloat16] [--steps=5]

Writes experiments/results/bench_accel_<platform>.md (``--out``). ``--tiny``
shrinks the networks and images (the test suite's CPU run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from configs import common, pix2pix_omgd
from gcjax import precision, sharding
from gcjax.methods import omgd
from gcjax.metrics import cost

HERE = os.path.dirname(os.path.abspath(__file__))

# Dense peak TFLOP/s per chip by device kind substring (lower case) and dtype.
PEAKS = {
    'h200': {'bfloat16': 989.0, 'float32': 67.0},
    'h100': {'bfloat16': 989.0, 'float32': 67.0},
    'a100': {'bfloat16': 312.0, 'float32': 19.5},
    'l4': {'bfloat16': 121.0, 'float32': 30.3},
    'v6': {'bfloat16': 918.0, 'float32': 918.0 / 4},
    'v5p': {'bfloat16': 459.0, 'float32': 459.0 / 4},
    'v5 lite': {'bfloat16': 197.0, 'float32': 197.0 / 4},
    'v5e': {'bfloat16': 197.0, 'float32': 197.0 / 4},
    'v4': {'bfloat16': 275.0, 'float32': 275.0 / 4},
}


def peak_flops(kind: str, dtype: str) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure comes from)."""
  k = kind.lower()
  for name, peaks in PEAKS.items():
    if name in k:
      return 1e12 * peaks[dtype], f'table ({name})'
  return 2.0 * cost.matmul_rate(n=1024 if _TINY[0] else 4096), \
      'measured f32 matmul'


_TINY = [False]


def make_config(tiny: bool, res: int, kind: str = 'vem'):
  c = pix2pix_omgd.build(kind, 'paper')
  c.data.args.resolution = res
  if tiny:
    c.teacher.ngf, c.student.ngf, c.disc.ndf = 4, 2, 4
    c.teacher_deep.ngf = 2
    # 3 stride-2 PatchGAN layers leave no pixels of a 16x16 image's
    # half-scale copy (NaN discriminator losses).
    c.disc.n_layers = 1
    c.loss.feature_layers = ('down1', 'up1')
    common.smoke_mi(c.mi)
  return c


def run_steps(step, state, batch, key, frozen, steps: int):
  """(state, metrics, compile + first step s, the ``steps`` later steps'
  times in s) of a jitted train step, each step with its own folded key."""
  t0 = time.perf_counter()
  state, m = step(state, batch, key, frozen)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  times = []
  for i in range(steps):
    t0 = time.perf_counter()
    state, m = step(state, batch, jax.random.fold_in(key, i), frozen)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  return state, m, compile_s, times


def measure(c, batch_size: int, res: int, dtype: str, steps: int) -> dict:
  """One (dtype, batch) row."""
  mesh = sharding.create_mesh()
  rng = np.random.RandomState(0)
  batch = {k: rng.uniform(-1, 1, (batch_size, res, res, 3)).astype(
      np.float32) for k in ('src', 'tgt')}
  batch = sharding.global_from_host(batch, mesh)
  method = omgd.make(c, batch)
  rep = sharding.replicated(mesh)
  state = jax.jit(method.init, out_shardings=rep)(jax.random.key(0))
  frozen = jax.device_put(method.frozen, rep)
  fn = precision.traced_in(method.train_step, dtype)
  key = jax.random.key(1)
  flops = cost.xla_flops(fn, state, batch, key, frozen)
  step = jax.jit(fn, donate_argnums=(0,),
                 out_shardings=(jax.tree.map(lambda _: rep, state), rep))
  _, m, compile_s, times = run_steps(step, state, batch, key, frozen, steps)
  step_s = float(np.median(times))
  m = jax.device_get(m)
  return dict(dtype=dtype, batch=batch_size, compile_s=compile_s,
              step_s=step_s, img_s=batch_size / step_s, flops=flops,
              nonfinite=sorted(k for k, v in m.items()
                               if not np.all(np.isfinite(v))))


def markdown(rows, info) -> str:
  lines = [
      f'# OMGD + VEM train step throughput ({info["platform"]}, '
      f'{info["n_dev"]} x {info["kind"]})', '',
      f'Step: pix2pix_vem:paper networks{" (TINY)" if info["tiny"] else ""}'
      f', {info["res"]}x{info["res"]} RGB; median of {info["steps"]} steps '
      'after one warm-up; FLOPs from XLA cost analysis of the step compiled '
      'for CPU; MFU against the peak below x devices. Load average before: '
      f'{info["load"][0]:.2f}.', '',
      '| dtype | batch | step ms | images/s | GFLOP/step | TFLOP/s | peak '
      'TFLOP/s (source) | MFU | compile s | best |',
      '|---|---|---|---|---|---|---|---|---|---|']
  best = {}
  for r in rows:
    if r['img_s'] > best.get(r['dtype'], (0, None))[0]:
      best[r['dtype']] = (r['img_s'], r['batch'])
  for r in rows:
    rate = r['flops'] / r['step_s']
    lines.append(
        f'| {r["dtype"]} | {r["batch"]} | {1e3 * r["step_s"]:.1f} | '
        f'{r["img_s"]:.2f} | {r["flops"] / 1e9:.2f} | {rate / 1e12:.3f} | '
        f'{r["peak"] / 1e12:.1f} ({r["peak_src"]}) | '
        f'{100 * r["mfu"]:.2f}% | {r["compile_s"]:.1f} | '
        f'{"*" if best[r["dtype"]][1] == r["batch"] else ""} |')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> list[dict]:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--batches', default='4,8,16,32')
  ap.add_argument('--dtypes', default='float32,bfloat16')
  ap.add_argument('--res', type=int, default=256)
  ap.add_argument('--steps', type=int, default=5)
  ap.add_argument('--tiny', action='store_true')
  ap.add_argument('--out', default='')
  args = ap.parse_args(argv)
  _TINY[0] = args.tiny
  dev = jax.devices()[0]
  info = dict(platform=dev.platform, kind=dev.device_kind,
              n_dev=jax.device_count(), tiny=args.tiny, res=args.res,
              steps=args.steps, load=os.getloadavg())
  c = make_config(args.tiny, args.res)
  rows = []
  for dtype in args.dtypes.split(','):
    precision.check(dtype)
    peak, src = peak_flops(dev.device_kind, dtype)
    for b in (int(x) for x in args.batches.split(',')):
      r = measure(c, b, args.res, dtype, args.steps)
      r.update(peak=peak, peak_src=src,
               mfu=r['flops'] / r['step_s'] / (peak * jax.device_count()))
      rows.append(r)
      print(f'{dtype} b{b}: {1e3 * r["step_s"]:.1f} ms, {r["img_s"]:.2f} '
            f'img/s, MFU {100 * r["mfu"]:.2f}%', file=sys.stderr)
  out = args.out or os.path.join(HERE, 'results',
                                 f'bench_accel_{dev.platform}.md')
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'w') as f:
    f.write(markdown(rows, info))
  print('wrote', out, file=sys.stderr)
  return rows


if __name__ == '__main__':
  main()

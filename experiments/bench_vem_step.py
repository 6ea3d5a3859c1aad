"""Benchmark: VEM's overhead on the OMGD step, and forward-pass throughput.

Measures, in one process (so the ratios are comparable):
1. wall time of one jitted ``omgd`` train step with ``mi.kind`` = none / vem
   / vid / crd at the same shapes (median over timed steps after warm-up);
   the VEM target is <= 1.35x the plain OMGD step;
2. forward throughput in true GMAC/s of the teacher (ngf 64) and student
   (ngf 16) U-Nets at 256x256, batch 1, next to this machine's f32 matmul
   rate (a 4096^2 ``jnp.dot``).

Usage:
  python -m experiments.bench_vem_step [--res 32] [--batch 16] [--steps 5]
      [--teacher_ngf 32] [--student_ngf 8] [--fwd_res 256]
Writes experiments/results/bench_vem_step.md (and prints it).
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import pix2pix_omgd
from gcjax import sharding
from gcjax.methods import omgd
from gcjax.metrics import cost
from gcjax.models import unet

HERE = os.path.dirname(os.path.abspath(__file__))


def step_time(kind, args):
  c = pix2pix_omgd.build(kind, 'default')
  c.data.args.resolution = args.res
  c.teacher.ngf, c.student.ngf = args.teacher_ngf, args.student_ngf
  c.mi.ebm_pool, c.mi.ebm_ch = args.ebm_pool, args.ebm_ch
  if args.no_vgg:
    c.loss.style = c.loss.perceptual = 0.0
  mesh = sharding.create_mesh()
  rng = np.random.RandomState(0)
  batch = {k: rng.uniform(-1, 1, (args.batch, args.res, args.res, 1)).astype(
      np.float32) for k in ('src', 'tgt')}
  batch = sharding.global_from_host(batch, mesh)
  method = omgd.make(c, batch)
  rep = sharding.replicated(mesh)
  state = jax.jit(method.init, out_shardings=rep)(jax.random.key(0))
  frozen = jax.device_put(method.frozen, rep)
  step = jax.jit(method.train_step, donate_argnums=(0,),
                 out_shardings=(jax.tree.map(lambda _: rep, state), rep))
  key = jax.random.key(1)
  t0 = time.perf_counter()
  state, m = step(state, batch, key, frozen)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  holder = [state]

  def once():
    holder[0], mm = step(holder[0], batch, key, frozen)
    return mm
  return cost.measure_latency(once, (), n_warmup=0,
                              n_iters=args.steps)['median_s'], compile_s


def fwd_throughput(ngf, res):
  m = unet.UNetGenerator(ngf=ngf, out_ch=3)
  x = jnp.zeros((1, res, res, 3))
  v = m.init({'params': jax.random.key(0), 'dropout': jax.random.key(0)}, x)
  f = jax.jit(lambda v, x: m.apply(v, x)[0])
  macs = cost.count_macs(lambda v, x: m.apply(v, x)[0], v, x)['true']
  t = cost.measure_latency(f, (v, x), n_warmup=1, n_iters=5)['median_s']
  return macs, t


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--res', type=int, default=32)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--teacher_ngf', type=int, default=32)
  p.add_argument('--student_ngf', type=int, default=8)
  p.add_argument('--fwd_res', type=int, default=256)
  p.add_argument('--kinds', default='none,vem,vid,crd')
  p.add_argument('--no_vgg', action='store_true')
  p.add_argument('--ebm_pool', type=int, default=4)
  p.add_argument('--ebm_ch', type=int, default=16)
  p.add_argument('--skip_fwd', action='store_true')
  args = p.parse_args()
  lines = [f'# VEM step overhead and forward throughput ({jax.default_backend()}'
           f', {jax.device_count()} device(s))', '',
           f'Step: {args.res}x{args.res}x1, batch {args.batch}, teacher ngf '
           f'{args.teacher_ngf}, student ngf {args.student_ngf}, VGG losses '
           f'{"off" if args.no_vgg else "as in the default preset"}, energy '
           f'net ch {args.ebm_ch} '
           f'on {args.ebm_pool}x avg-pooled (t, s); median of {args.steps} '
           'steps.',
           '', '| mi.kind | step (ms) | vs none | compile (s) |',
           '|---|---|---|---|']
  base = None
  for kind in args.kinds.split(','):
    t, c = step_time(kind, args)
    base = base or t
    lines.append(f'| {kind} | {1e3 * t:.1f} | {t / base:.3f}x | {c:.1f} |')
    print(lines[-1], flush=True)
  if not args.skip_fwd:
    rate = cost.matmul_rate()
    lines += ['', f'f32 matmul (4096^2 jnp.dot): {rate / 1e9:.1f} GMAC/s', '',
              f'| U-Net @ {args.fwd_res}, batch 1 | true GMACs | ms | GMAC/s '
              '| % of matmul |', '|---|---|---|---|---|']
    res = {}
    for ngf in (64, 16):
      macs, t = fwd_throughput(ngf, args.fwd_res)
      res[ngf] = (macs, t)
      lines.append(f'| ngf {ngf} | {macs / 1e9:.3f} | {1e3 * t:.1f} | '
                   f'{macs / t / 1e9:.1f} | {100 * macs / t / rate:.0f}% |')
    speedup = res[64][1] / res[16][1]
    mac_ratio = res[64][0] / res[16][0]
    lines += ['', f'student speedup {speedup:.2f}x vs true-MAC ratio '
              f'{mac_ratio:.2f}x ({speedup / mac_ratio:.2f} of it)']
  text = '\n'.join(lines) + '\n'
  print(text)
  os.makedirs(os.path.join(HERE, 'results'), exist_ok=True)
  with open(os.path.join(HERE, 'results', 'bench_vem_step.md'), 'w') as f:
    f.write(text)


if __name__ == '__main__':
  main()

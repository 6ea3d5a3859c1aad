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

``--breakdown`` instead times the paper-shape step (``pix2pix_vem:paper``
networks: wide ngf-64 + deep ngf-16 U-Net teachers trained online, student
ngf 16, ndf-128 PatchGAN (one scale), VGG16 style/perceptual losses, energy
net with K = 10 Langevin steps; 256x256 RGB, batch 4) and a timed split of
its parts, each jitted on its own at the same shapes
(``experiments/vem_step_parts.py``): median of ``--steps`` calls after the
compiling one, next to the machine's load average; then the step against
the sum of its parts (the gap is overhead: what XLA fuses or schedules worse
inside one program, the glue between parts, and anything not in the list).
``--tiny`` shrinks the networks and images (the test suite's run).
``--mi`` picks the MI add-on of the step (default ``vem``; ``none`` is the
plain OMGD paper step, without the energy-net rows). After the JAX timing
(not concurrently), ``--torch_python`` (default /tmp/torchvenv/bin/python;
'' to skip) runs ``experiments/torch_omgd_step.py`` (OMGD's step with
mi none, in eager PyTorch) at the same shapes as a subprocess, and the step
is reported against that measured PyTorch step; without a PyTorch
interpreter the paper-shape ratio falls back to the constant
``TORCH_STEP_S`` of issue 18 (measured on another machine), and says so.
"""

import argparse
import json
import os
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import pix2pix_omgd
from experiments import bench_accel, vem_step_parts
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


# OMGD's step in PyTorch at the paper's shapes, measured on another 2-core
# machine in an earlier session (issue 18): the fallback without a PyTorch
# interpreter only.
TORCH_STEP_S = 17.8
TORCH_PYTHON = '/tmp/torchvenv/bin/python'
TORCH_SCRIPT = os.path.join(HERE, 'torch_omgd_step.py')
OLDER = '<!-- older sections below -->'


def _timed(fn, args, reps):
  """(compile + first call s, median of ``reps`` later calls s)."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  return first, float(np.median(ts))


def breakdown(args) -> dict:
  """Paper-shape step time and its parts' times; returns the rows."""
  res, b = args.res, args.batch
  c = bench_accel.make_config(args.tiny, res, args.mi)
  mesh = sharding.create_mesh()
  rng = np.random.RandomState(0)
  batch = sharding.global_from_host(
      {k: rng.uniform(-1, 1, (b, res, res, 3)).astype(np.float32)
       for k in ('src', 'tgt')}, mesh)
  method = omgd.make(c, batch)
  rep = sharding.replicated(mesh)
  init = jax.jit(method.init, out_shardings=rep)
  frozen = jax.device_put(method.frozen, rep)
  key = jax.random.key(1)
  load0 = os.getloadavg()
  state = init(jax.random.key(0))
  step = jax.jit(method.train_step, donate_argnums=(0,),
                 out_shardings=(jax.tree.map(lambda _: rep, state), rep))
  state, m, compile_s, times = bench_accel.run_steps(
      step, state, batch, key, frozen, args.steps)
  step_s = float(np.median(times))
  print(f'step {step_s:.3f} s (compile {compile_s:.1f} s)', flush=True)
  del state
  rows = []
  for p in vem_step_parts.parts(method, init(jax.random.key(0)), batch,
                                frozen, key, langevin_steps=c.mi.n_steps):
    first, t = _timed(jax.jit(p.fn), p.args, args.steps)
    rows.append(dict(name=p.name, kind=p.kind, count=p.count, s=t,
                     compile_s=first - t))
    print(f'{p.name} {p.kind}: {1e3 * t:.1f} ms x {p.count}', flush=True)
  total = sum(r['count'] * r['s'] for r in rows)
  torch_run = None
  if args.torch_python and os.path.exists(args.torch_python):
    torch_run = torch_step(args.torch_python, res, b, args.steps, args.tiny,
                           args.torch_parts)
    print(f'PyTorch step {torch_run["step_s_median"]:.3f} s', flush=True)
  return dict(rows=rows, step_s=step_s, step_times=times, torch=torch_run,
              torch_python=args.torch_python, mi=args.mi,
              compile_s=compile_s, sum_s=total, load=(load0, os.getloadavg()),
              config=c, res=res, batch=b, reps=args.steps, tiny=args.tiny,
              nonfinite=sorted(k for k, v in jax.device_get(m).items()
                               if not np.all(np.isfinite(v))))


def torch_step(python, res, batch, steps, tiny, parts=False) -> dict:
  """Runs ``torch_omgd_step.py`` in ``python``; returns its JSON record."""
  cmd = [python, TORCH_SCRIPT, f'--res={res}', f'--batch={batch}',
         f'--steps={steps}', *(['--tiny'] if tiny else []),
         *(['--parts'] if parts else [])]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _torch_lines(r) -> list[str]:
  """The comparison with PyTorch's OMGD step (measured, or the constant)."""
  t = r['torch']
  what = 'OMGD step' if r['mi'] == 'none' else f'OMGD + {r["mi"]} step'
  if t is not None:
    lines = [
        f'Against PyTorch\'s OMGD step (mi none) measured in this sitting '
        f'after the JAX timing (`experiments/torch_omgd_step.py`, torch '
        f'{t["torch"]}, {t["threads"]} threads, eager f32'
        f'{", denormals flushed" if t.get("flush_denormal") else ""}, median of '
        f'{t["steps"]} steps after a first one of {t["first_s"]:.2f} s; peak '
        f'RSS {t["peak_rss_mb"]:.0f} MB): {t["step_s_median"]:.3f} s; this '
        f'{what}: **{r["step_s"] / t["step_s_median"]:.2f}x**.']
    if t.get('parts'):
      lines += ['', '| PyTorch pass | ms |', '|---|---|'] + [
          f'| {k} | {1e3 * v:.1f} |' for k, v in t['parts'].items()]
    return lines
  if not r['tiny'] and r['res'] == 256 and r['batch'] == 4:
    return [f'No PyTorch interpreter at {r["torch_python"]!r}: against the '
            f'constant PyTorch OMGD step of issue 18 ({TORCH_STEP_S} s, '
            f'measured on another machine in an earlier session, so only '
            f'indicative): {r["step_s"] / TORCH_STEP_S:.2f}x.']
  return []


def breakdown_markdown(r) -> str:
  c = r['config']
  mi = ('' if r['mi'] == 'none' else
        f', energy net with K = {c.mi.n_steps} Langevin steps'
        if r['mi'] == 'vem' else f', MI add-on {r["mi"]}')
  title = 'OMGD' if r['mi'] == 'none' else f'OMGD + {r["mi"].upper()}'
  lines = [
      f'# {title} pix2pix train step, broken down ({jax.default_backend()}'
      f', {jax.device_count()} device(s))', '',
      f'Step: `pix2pix_omgd:paper,mi={r["mi"]}` networks'
      f'{" (TINY)" if r["tiny"] else ""}: '
      f'wide U-Net ngf {c.teacher.ngf} + deep U-Net ngf {c.teacher_deep.ngf} '
      f'teachers trained online, student ngf {c.student.ngf}, PatchGAN ndf '
      f'{c.disc.ndf} ({c.disc.n_layers} layers), VGG16 style/perceptual'
      f'{mi}; {r["res"]}x'
      f'{r["res"]} RGB, batch {r["batch"]}. Times are medians of '
      f'{r["reps"]} calls after the compiling one; each part is jitted on '
      'its own at the step\'s shapes. Load average (1/5/15 min) before: '
      + '/'.join(f'{x:.2f}' for x in r['load'][0]) + ', after: '
      + '/'.join(f'{x:.2f}' for x in r['load'][1]) + '.', '',
      '| part | pass | ms per call | x in step | ms in step | % of sum |',
      '|---|---|---|---|---|---|']
  for x in r['rows']:
    share = x['count'] * x['s']
    lines.append(
        f'| {x["name"]} | {x["kind"]} | {1e3 * x["s"]:.1f} | {x["count"]} | '
        f'{1e3 * share:.1f} | {100 * share / r["sum_s"]:.1f}% |')
  gap = r['step_s'] - r['sum_s']
  lines += [
      f'| **sum of parts** | | | | **{1e3 * r["sum_s"]:.1f}** | 100% |',
      f'| **whole step** (jitted, donated state) | | | | '
      f'**{1e3 * r["step_s"]:.1f}** | |', '',
      f'Step {r["step_s"]:.2f} s (calls: '
      + ', '.join(f'{t:.2f}' for t in r['step_times'])
      + f'; compile + first call {r["compile_s"]:.1f} s) vs sum of parts '
      f'{r["sum_s"]:.2f} s: gap {gap:+.2f} s ({100 * gap / r["step_s"]:+.1f}%'
      ' of the step).']
  lines += _torch_lines(r)
  if r['nonfinite']:
    lines.append(f'Non-finite metrics: {r["nonfinite"]}.')
  return '\n'.join(lines) + '\n'


def write_keeping_older(path, text):
  """Writes ``text``, keeping the file's sections below ``OLDER``."""
  older = ''
  if os.path.exists(path):
    with open(path) as f:
      old = f.read()
    older = old[old.index(OLDER):] if OLDER in old else (
        f'{OLDER}\n\n## Earlier figures\n\n' + old.replace('\n# ', '\n### ')
        .replace('# ', '### ', 1))
  with open(path, 'w') as f:
    f.write(text + ('\n' + older if older else ''))


def main(argv=None):
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
  p.add_argument('--breakdown', action='store_true')
  p.add_argument('--tiny', action='store_true')
  p.add_argument('--mi', default='vem', choices=('none', 'vem', 'vid', 'crd'),
                 help='--breakdown: the step\'s MI add-on')
  p.add_argument('--torch_python', default=TORCH_PYTHON,
                 help='--breakdown: interpreter with torch for '
                 'torch_omgd_step.py ("" to skip)')
  p.add_argument('--torch_parts', action='store_true',
                 help='--breakdown: also time PyTorch\'s network passes')
  p.add_argument('--out', default=os.path.join(HERE, 'results',
                                               'bench_vem_step.md'))
  args = p.parse_args(argv)
  from gcjax import hostmem
  if hostmem.keep_freed_memory():   # as gcjax.main does; the PyTorch
    os.environ[hostmem.ENV] = '1'   # step's subprocess follows suit
  if args.breakdown:
    r = breakdown(args)
    text = breakdown_markdown(r)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_keeping_older(args.out, text)
    return r
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
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  write_keeping_older(args.out, text)


if __name__ == '__main__':
  main()

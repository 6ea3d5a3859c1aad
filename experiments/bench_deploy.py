"""Deployment latency: gcjax jit vs onnxruntime vs the StableHLO artifact.

For the Pix2Pix U-Net teacher (ngf 64) and student (ngf 16) and the
CycleGAN MobileResNet teacher (ngf 64) and student (ngf 16), at 256x256,
batch 1 and 8 (random weights; speed does not depend on them), measures:

* gcjax jit (XLA:CPU, the sub-pixel / shift-and-add forms);
* onnxruntime (CPU EP, ``--threads`` intra-op threads) on the exports of
  ``gcjax.export.verify.build`` in each transposed-conv form
  (``phases``, the default, ``one_conv``, ``convtranspose``);
* the StableHLO artifact (``jax.export`` deserialized and called);

and, in the same sitting, the f32 matmul rate
(``gcjax.metrics.cost.matmul_rate``, measured before and after; the higher
is used). Every runtime is timed in turns, and the minimum over the
repetitions is reported (the machine is shared: the minimum is the least
disturbed figure; medians are in the JSON). Achieved GMAC/s use true MACs.

  python -m experiments.bench_deploy [--threads=2] [--reps=5] [--batches=1,8]

Writes experiments/results/bench_deploy.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from gcjax.export import onnx_conv, to_onnx, to_stablehlo, verify
from gcjax.metrics import cost
from gcjax.models import resnet, unet

HERE = os.path.dirname(os.path.abspath(__file__))
RES = 256
MODELS = {
    'U-Net ngf 64 (teacher)': lambda: unet.UNetGenerator(ngf=64),
    'U-Net ngf 16 (student)': lambda: unet.UNetGenerator(ngf=16),
    'MobileResNet ngf 64 (teacher)':
        lambda: resnet.MobileResnetGenerator(ngf=64),
    'MobileResNet ngf 16 (student)':
        lambda: resnet.MobileResnetGenerator(ngf=16),
}
PAIRS = (('U-Net ngf 16 (student)', 'U-Net ngf 64 (teacher)'),
         ('MobileResNet ngf 16 (student)', 'MobileResNet ngf 64 (teacher)'))
# The table (idle 2-core CPU, OMGD's PyTorch models exported to ONNX,
# onnxruntime 1.32, 2 threads): ms at batch 1; that machine's matmul rate
# is implied by "the U-Net teacher at ~80% of the matmul rate".
PYTORCH_ORT_MS = {'U-Net ngf 16 (student)': 5.3,
                  'U-Net ngf 64 (teacher)': 58.7,
                  'MobileResNet ngf 16 (student)': 31.1}
PYTORCH_TEACHER_FRACTION = 0.80


def _variables(module):
  shapes = jax.eval_shape(module.init, jax.random.key(0),
                          jnp.zeros((1, RES, RES, 3)))
  rng = np.random.default_rng(0)
  v = jax.tree.map(lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32),
                   shapes)
  if 'batch_stats' in v:
    v['batch_stats'] = jax.tree.map(np.abs, v['batch_stats'])
  return v


def _ort(blob: bytes, threads: int):
  import onnxruntime as ort
  o = ort.SessionOptions()
  o.intra_op_num_threads = threads
  o.inter_op_num_threads = 1
  o.log_severity_level = 3
  s = ort.InferenceSession(blob, o, providers=['CPUExecutionProvider'])
  return lambda x: s.run(None, {'input': x})[0]


def _time(runners: dict, x, reps: int) -> dict:
  """``{name: [seconds]}``, runners called in turns after one warm-up."""
  for f in runners.values():
    jax.block_until_ready(f(x))
  times = {k: [] for k in runners}
  for _ in range(reps):
    for k, f in runners.items():
      t = time.perf_counter()
      jax.block_until_ready(f(x))
      times[k].append(time.perf_counter() - t)
  return times


def run(threads: int, reps: int, batches) -> dict:
  rate0 = cost.matmul_rate()
  rows = []
  for name, make in MODELS.items():
    m = make()
    v = _variables(m)
    apply = lambda v, x, m=m: m.apply(v, x, train=False)[0]
    macs = cost.count_macs(lambda x, v=v, apply=apply: apply(v, x),
                           jnp.zeros((1, RES, RES, 3)))
    jit = jax.jit(apply)
    for b in batches:
      x = verify.check_inputs((RES, RES, 3), 'float32', b)
      runners = {'gcjax jit': lambda x, v=v, jit=jit: jit(v, x)}
      for form in onnx_conv.FORMS:
        blob = to_onnx.convert(apply, v, (RES, RES, 3), batch=b,
                               transposed=form)
        runners[f'onnxruntime ({form})'] = _ort(blob, threads)
      hlo = to_stablehlo.export(apply, v, (RES, RES, 3), batch=b,
                                platforms=('cpu',))
      exp = jax.export.deserialize(bytearray(hlo))
      vj = jax.tree.map(jnp.asarray, v)
      runners['StableHLO'] = lambda x, exp=exp, vj=vj: exp.call(vj, x)
      times = _time(runners, x, reps if b == 1 else max(2, reps // 2))
      for k, ts in times.items():
        rows.append({'model': name, 'batch': b, 'runtime': k,
                     'min_s': min(ts), 'median_s': statistics.median(ts),
                     'true_macs': macs['true'] * b,
                     'lit_macs': macs['literature'] * b})
      print(name, b, {k: round(1e3 * min(t), 1) for k, t in times.items()},
            flush=True)
  rate1 = cost.matmul_rate()
  return {'matmul_rate': max(rate0, rate1), 'matmul_rates': [rate0, rate1],
          'threads': threads, 'rows': rows,
          'load_avg': os.getloadavg()}


def _md(res: dict) -> str:
  rate = res['matmul_rate']
  rows = res['rows']
  lines = [
      '# Deployment latency (256x256, random weights)', '',
      f'`python -m experiments.bench_deploy --threads={res["threads"]}`; '
      f'f32 matmul rate {rate / 1e9:.1f} GMAC/s (measured before/after: '
      + ', '.join(f'{r / 1e9:.1f}' for r in res['matmul_rates'])
      + f'); load average at the end {res["load_avg"][0]:.1f} on a '
      'shared 2-core CPU. Minimum over repetitions; GMAC/s on true MACs.',
      '', '| model | batch | runtime | ms | GMAC/s | % of matmul rate |',
      '|---|---|---|---|---|---|']
  for r in rows:
    g = r['true_macs'] / r['min_s']
    lines.append(f'| {r["model"]} | {r["batch"]} | {r["runtime"]} | '
                 f'{1e3 * r["min_s"]:.1f} | {g / 1e9:.1f} | '
                 f'{100 * g / rate:.0f}% |')

  def get(model, b, rt):
    return next(r for r in rows if r['model'] == model and r['batch'] == b
                and r['runtime'] == rt)

  ort = 'onnxruntime (phases)'
  lines += ['', '## Student speedup against its true-MAC ratio', '',
            '| pair | batch | runtime | speedup | true-MAC ratio | '
            'speedup / ratio |', '|---|---|---|---|---|---|']
  for s, t in PAIRS:
    for b in sorted({r['batch'] for r in rows}):
      for rt in sorted({r['runtime'] for r in rows}):
        rs, rt_ = get(s, b, rt), get(t, b, rt)
        sp = rt_['min_s'] / rs['min_s']
        ratio = rt_['true_macs'] / rs['true_macs']
        lines.append(f'| {s} vs {t} | {b} | {rt} | {sp:.2f}x | '
                     f'{ratio:.2f}x | {sp / ratio:.2f} |')
  teacher = get('U-Net ngf 64 (teacher)', 1, ort)
  t_frac = teacher['true_macs'] / teacher['min_s'] / rate
  su = get('U-Net ngf 16 (student)', 1, ort)
  sp_ratio = (teacher['min_s'] / su['min_s']) / (
      teacher['true_macs'] / su['true_macs'])
  pt_rate = (get('U-Net ngf 64 (teacher)', 1, ort)['true_macs']
             / (PYTORCH_ORT_MS['U-Net ngf 64 (teacher)'] / 1e3)
             / PYTORCH_TEACHER_FRACTION)
  lines += ['', '## Targets (onnxruntime, default export form, batch 1)', '',
            f'- U-Net teacher at >= 70% of the matmul rate: **{100 * t_frac:.0f}%**'
            f' ({"met" if t_frac >= 0.7 else "not met"}).',
            f'- U-Net student speedup >= 0.8 of its true-MAC ratio: '
            f'**{sp_ratio:.2f}** ({"met" if sp_ratio >= 0.8 else "not met"}).',
            '- Each student no slower than the PyTorch export (as a fraction '
            'of each machine\'s matmul rate; the issue\'s machine: '
            f'{pt_rate / 1e9:.0f} GMAC/s implied by its teacher at 80%):']
  for s in ('U-Net ngf 16 (student)', 'MobileResNet ngf 16 (student)'):
    r = get(s, 1, ort)
    ours = r['true_macs'] / r['min_s'] / rate
    theirs = r['true_macs'] / (PYTORCH_ORT_MS[s] / 1e3) / pt_rate
    lines.append(f'  - {s}: gcjax export {100 * ours:.0f}% vs PyTorch '
                 f'export {100 * theirs:.0f}% of the matmul rate '
                 f'({"met" if ours >= theirs else "not met"}).')
  return '\n'.join(lines) + '\n'


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--batches', default='1,8')
  a = p.parse_args()
  res = run(a.threads, a.reps, [int(b) for b in a.batches.split(',')])
  out = os.path.join(HERE, 'results', 'bench_deploy')
  with open(out + '.json', 'w') as f:
    json.dump(res, f, indent=1)
  with open(out + '.md', 'w') as f:
    f.write(_md(res))
  print(_md(res))


if __name__ == '__main__':
  main()

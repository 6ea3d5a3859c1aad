"""Deployment latency: gcjax jit, onnxruntime, StableHLO, PyTorch's export.

Rows (256x256 by default, random weights: speed does not depend on them):
the Pix2Pix U-Net teacher (ngf 64) and student (ngf 16) and the
GAN-Compression MobileResNet student (ngf 16), at batch 1 and 8, under

* ``gcjax jit`` (XLA:CPU, gcjax's sub-pixel / shift-and-add forms);
* ``onnxruntime``: ``gcjax.export``'s ONNX graph with its default
  transposed-conv form (``ConvTranspose``), and ``onnxruntime (phases)``
  with the sub-pixel form (``--forms`` picks the forms), CPU EP,
  ``--threads`` intra-op threads, all graph optimizations;
* ``StableHLO``: the ``jax.export`` artifact, deserialized and jitted;
* ``PyTorch export``: the same architecture written in PyTorch
  (``experiments/torch_deploy_models.py``), exported by ``torch.onnx`` in a
  side interpreter (``--torch_python``) and run by the same onnxruntime
  session options (skipped, and said so, if that interpreter is missing).

The machine may be shared, so each (model, batch) row is timed in
repetitions, and every repetition first measures the f32 matmul rate (a
jitted ``--matmul_n`` square product, best of 3) and then calls each
runtime once, in turns. A row reports the minimum time over repetitions
(the least disturbed) against the best matmul rate measured among that
row's repetitions: both figures come from the same minutes. GMAC/s count
true MACs (``gcjax.metrics.cost``). After every row, the markdown and JSON
are rewritten, so a killed run keeps its finished rows.

  python -m experiments.bench_deploy                 # the whole table
  python -m experiments.bench_deploy --quick         # 64x64, a smoke check

Writes experiments/results/bench_deploy.md and .json (``--quick``: under
/tmp unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from gcjax.export import onnx_conv, to_onnx, to_stablehlo, verify
from gcjax.metrics import cost
from gcjax.models import resnet, unet

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {   # key: (label, module, role)
    'unet64': ('U-Net ngf 64', lambda: unet.UNetGenerator(ngf=64),
               'teacher'),
    'unet16': ('U-Net ngf 16', lambda: unet.UNetGenerator(ngf=16),
               'student'),
    'mobile16': ('MobileResNet ngf 16',
                 lambda: resnet.MobileResnetGenerator(ngf=16), 'student'),
    'mobile64': ('MobileResNet ngf 64',
                 lambda: resnet.MobileResnetGenerator(ngf=64), 'teacher'),
}
PAIRS = (('unet16', 'unet64'), ('mobile16', 'mobile64'))
DEFAULT_MODELS = 'unet64,unet16,mobile16'
# The issue's table (2-core CPU, OMGD's PyTorch models exported to ONNX,
# onnxruntime 1.32, 2 threads), ms at batch 1; that machine's matmul rate
# is implied by "onnxruntime runs the U-Net teacher at ~80% of it".
ISSUE_PYTORCH_ORT_MS = {'unet16': 5.3, 'unet64': 58.7, 'mobile16': 31.1}
ISSUE_TEACHER_FRACTION = 0.80
JIT, ORT, HLO, PT = ('gcjax jit', 'onnxruntime', 'StableHLO',
                     'PyTorch export (onnxruntime)')
DEFAULT_FORM = 'convtranspose'
PAUSE_S = 0.3


def _variables(module, res: int):
  shapes = jax.eval_shape(module.init, jax.random.key(0),
                          jnp.zeros((1, res, res, 3)))
  rng = np.random.default_rng(0)
  v = jax.tree.map(lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32),
                   shapes)
  if 'batch_stats' in v:
    v['batch_stats'] = jax.tree.map(np.abs, v['batch_stats'])
  return v


def _ort_session(model, threads: int):
  import onnxruntime as ort
  o = ort.SessionOptions()
  o.intra_op_num_threads = threads
  o.inter_op_num_threads = 1
  o.log_severity_level = 3
  return ort.InferenceSession(model, o, providers=['CPUExecutionProvider'])


def _matmul_probe(n: int):
  a = jnp.asarray(np.random.default_rng(1).standard_normal((n, n)),
                  jnp.float32)
  f = jax.jit(lambda a: a @ a)
  jax.block_until_ready(f(a))

  def rate() -> float:
    best = np.inf
    for _ in range(3):
      t = time.perf_counter()
      jax.block_until_ready(f(a))
      best = min(best, time.perf_counter() - t)
    return n ** 3 / best
  return rate


def _torch_exports(python: str, models, res: int, batches, out: str):
  """Runs torch_deploy_models.py; ``(folder or None, note)``."""
  if not python or not os.path.exists(python):
    return None, f'no PyTorch interpreter at {python!r}: PyTorch rows skipped'
  cmd = [python, os.path.join(HERE, 'torch_deploy_models.py'), out,
         f'--res={res}', '--batches=' + ','.join(map(str, batches)),
         '--models=' + ','.join(models)]
  r = subprocess.run(cmd, capture_output=True, text=True)
  if r.returncode:
    return None, ('PyTorch export failed: '
                  + ' '.join(r.stderr.strip().splitlines()[-1:]))
  return out, f'torch.onnx exports made by {python} (TorchScript exporter)'


def _runners(module, v, res: int, b: int, threads: int, forms, pt_path):
  apply = lambda v, x: module.apply(v, x, train=False)[0]
  jit = jax.jit(apply)
  vj = jax.tree.map(jnp.asarray, v)
  out = {JIT: lambda x: jit(vj, x)}
  for form in forms:
    blob = to_onnx.convert(apply, v, (res, res, 3), batch=b,
                           transposed=form)
    s = _ort_session(blob, threads)
    name = ORT if form == DEFAULT_FORM else f'{ORT} ({form})'
    out[name] = lambda x, s=s: s.run(None, {'input': x})[0]
  hlo = to_stablehlo.export(apply, v, (res, res, 3), batch=b,
                            platforms=('cpu',))
  exp_call = jax.jit(jax.export.deserialize(bytearray(hlo)).call)
  out[HLO] = lambda x: exp_call(vj, x)
  if pt_path:
    pt = _ort_session(pt_path, threads)
    out[PT] = lambda x: pt.run(None, {'input': x})[0]     # x is NCHW
  return out, jit


def _row(key, b, res, threads, forms, reps, probe, pt_dir) -> dict:
  label, make, role = MODELS[key]
  m = make()
  v = _variables(m, res)
  macs = cost.count_macs(lambda x: m.apply(v, x, train=False)[0],
                         jnp.zeros((1, res, res, 3)))
  pt_path = pt_dir and os.path.join(pt_dir, f'{key}_b{b}.onnx')
  runners, jit = _runners(m, v, res, b, threads, forms, pt_path)
  x = verify.check_inputs((res, res, 3), 'float32', b)
  ref = np.asarray(jit(jax.tree.map(jnp.asarray, v), x))
  err = {}
  # PyTorch's graph reads NCHW: its users feed NCHW, so it gets it ready.
  inputs = {k: np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if k == PT
            else x for k in runners}
  for k, f in runners.items():       # warm-up (compiles) and a sanity check
    y = np.asarray(jax.block_until_ready(f(inputs[k])))
    if k != PT:
      err[k] = float(np.max(np.abs(y - ref)))
  times, rates = {k: [] for k in runners}, []
  for _ in range(reps):
    time.sleep(PAUSE_S)
    rates.append(probe())
    for k, f in runners.items():
      # Each runtime's worker threads spin for a while after a call; a pause
      # keeps the next runtime from starting against them.
      time.sleep(PAUSE_S)
      t = time.perf_counter()
      jax.block_until_ready(f(inputs[k]))
      times[k].append(time.perf_counter() - t)
  return {'key': key, 'model': label, 'role': role, 'batch': b, 'res': res,
          'true_macs': macs['true'] * b, 'lit_macs': macs['literature'] * b,
          'matmul_rates': rates, 'matmul_rate': max(rates),
          'load_avg': os.getloadavg(), 'max_abs_err_vs_jit': err,
          'times': {k: {'min_s': min(t), 'median_s': statistics.median(t),
                        'all_s': t} for k, t in times.items()}}


def _uptime() -> str:
  try:
    return subprocess.run(['uptime'], capture_output=True, text=True,
                          timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return 'load average: ' + ', '.join(f'{a:.2f}' for a in os.getloadavg())


def _write(out: str, res: dict) -> None:
  for ext, text in (('.json', json.dumps(res, indent=1)), ('.md', _md(res))):
    tmp = out + ext + '.tmp'
    with open(tmp, 'w') as f:
      f.write(text)
    os.replace(tmp, out + ext)


def _frac(row, rt) -> float | None:
  t = row['times'].get(rt)
  return None if t is None else row['true_macs'] / t['min_s'] / (
      row['matmul_rate'])


def _verdict(ok: bool) -> str:
  return '**met**' if ok else '**not met**'


def _md(res: dict) -> str:
  rows = res['rows']
  a = res['args']
  lines = [
      f'# Deployment latency ({a["res"]}x{a["res"]}, random weights)', '',
      f'`{res["command"]}`; onnxruntime {res["versions"]["onnxruntime"]}, '
      f'jax {res["versions"]["jax"]}, {a["threads"]} onnxruntime threads, '
      f'{res["cpus"]} CPUs.', '',
      f'- `uptime` at the start: `{res["uptime_start"]}`',
      f'- `uptime` at the end: `{res.get("uptime_end", "(run not finished)")}`',
      f'- PyTorch rows: {res["torch_note"]}.', '',
      'Each row: minimum over repetitions; the matmul rate is the best '
      f'{a["matmul_n"]}x{a["matmul_n"]} f32 product measured between that '
      'row\'s repetitions (same minutes). GMAC/s on true MACs; "% mm" = '
      'achieved GMAC/s / matmul rate. "onnxruntime" is gcjax\'s export '
      f'with `{DEFAULT_FORM}` transposed convs (the default); PyTorch\'s '
      'export is fed NCHW input prepared outside the timing.', '',
      '| model | batch | true GMAC | matmul GMAC/s | runtime | ms | '
      'median ms | GMAC/s | % mm |', '|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    for rt, t in r['times'].items():
      g = r['true_macs'] / t['min_s']
      lines.append(
          f'| {r["model"]} ({r["role"]}) | {r["batch"]} | '
          f'{r["true_macs"] / 1e9:.2f} | {r["matmul_rate"] / 1e9:.1f} | {rt} | '
          f'{1e3 * t["min_s"]:.1f} | {1e3 * t["median_s"]:.1f} | '
          f'{g / 1e9:.1f} | {100 * g / r["matmul_rate"]:.0f}% |')

  def get(key, b):
    return next((r for r in rows if r['key'] == key and r['batch'] == b),
                None)

  batches = sorted({r['batch'] for r in rows})
  pair_lines = []
  for s, t in PAIRS:
    for b in batches:
      rs, rt_ = get(s, b), get(t, b)
      if not (rs and rt_):
        continue
      ratio = rt_['true_macs'] / rs['true_macs']
      for rt in rs['times']:
        if rt not in rt_['times']:
          continue
        # Each time as a fraction of its own row's matmul rate, so that a
        # change of machine load between the two rows cancels.
        sp = (rt_['times'][rt]['min_s'] / rt_['matmul_rate']) / (
            rs['times'][rt]['min_s'] / rs['matmul_rate'])
        pair_lines.append(f'| {rs["model"]} vs {rt_["model"]} | {b} | {rt} '
                          f'| {sp:.2f}x | {ratio:.2f}x | {sp / ratio:.2f} |')
  if pair_lines:
    lines += ['', '## Student speedup against its true-MAC ratio', '',
              'Speedup = teacher time / student time, each normalized by its '
              'own row\'s matmul rate.', '',
              '| pair | batch | runtime | speedup | true-MAC ratio | '
              'speedup / ratio |', '|---|---|---|---|---|---|']
    lines += pair_lines

  lines += ['', '## Targets (onnxruntime, gcjax export)', '']
  load = res.get('load_start', 0.0)
  if load > res['cpus']:
    lines += [f'Load average {load:.1f} on {res["cpus"]} CPUs at the start: '
              'the verdicts below compare minimum times taken while other '
              'processes ran, and are indicative only.', '']
  teacher = get('unet64', 1)
  if teacher and ORT in teacher['times']:
    for b in batches:
      r = get('unet64', b)
      if r:
        f = _frac(r, ORT)
        lines.append(f'- U-Net teacher >= 70% of the matmul rate, batch {b}: '
                     f'{100 * f:.0f}% {_verdict(f >= 0.7)}')
    for b in batches:
      rs, rt_ = get('unet16', b), get('unet64', b)
      if rs and rt_:
        sp = (rt_['times'][ORT]['min_s'] / rt_['matmul_rate']) / (
            rs['times'][ORT]['min_s'] / rs['matmul_rate'])
        q = sp / (rt_['true_macs'] / rs['true_macs'])
        lines.append(f'- U-Net student speedup >= 0.8 of its true-MAC ratio, '
                     f'batch {b}: {q:.2f} {_verdict(q >= 0.8)}')
  for key in ('unet16', 'mobile16'):
    for b in batches:
      r = get(key, b)
      if r and PT in r['times']:
        ours, theirs = r['times'][ORT]['min_s'], r['times'][PT]['min_s']
        med = r['times'][ORT]['median_s'] / r['times'][PT]['median_s']
        lines.append(f'- {r["model"]} no slower than its PyTorch export '
                     f'(same sitting), batch {b}: {1e3 * ours:.1f} ms vs '
                     f'{1e3 * theirs:.1f} ms (x{ours / theirs:.2f}; medians '
                     f'x{med:.2f}) {_verdict(ours <= theirs)}')
  if teacher and ORT in teacher['times'] and a['res'] == 256:
    issue_rate = (teacher['true_macs']
                  / (ISSUE_PYTORCH_ORT_MS['unet64'] / 1e3)
                  / ISSUE_TEACHER_FRACTION)
    lines.append(
        '- Against the issue\'s table instead (fractions of each machine\'s '
        f'matmul rate; the issue\'s implied {issue_rate / 1e9:.0f} GMAC/s '
        'from its teacher at 80%), batch 1:')
    for key in ('unet16', 'mobile16'):
      r = get(key, 1)
      if r and ORT in r['times']:
        ours = _frac(r, ORT)
        theirs = r['true_macs'] / (ISSUE_PYTORCH_ORT_MS[key] / 1e3) / (
            issue_rate)
        lines.append(f'  - {r["model"]}: {100 * ours:.0f}% vs '
                     f'{100 * theirs:.0f}% {_verdict(ours >= theirs)}')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--reps', type=int, default=5,
                 help='repetitions at batch 1 (batch > 1: ceil(reps / 2))')
  p.add_argument('--batches', default='1,8')
  p.add_argument('--res', type=int, default=256)
  p.add_argument('--models', default=DEFAULT_MODELS,
                 help='comma-separated: ' + ','.join(MODELS))
  p.add_argument('--forms', default=f'{DEFAULT_FORM},phases',
                 help='ONNX transposed-conv forms: ' + ','.join(
                     onnx_conv.FORMS))
  p.add_argument('--matmul_n', type=int, default=1024)
  p.add_argument('--torch_python', default='/tmp/torchvenv/bin/python')
  p.add_argument('--quick', action='store_true',
                 help='64x64, batch 1 and 2, 2 repetitions, out under /tmp')
  p.add_argument('--out', default=None, help='output path without suffix')
  a = p.parse_args(argv)
  if a.quick:
    a.res, a.batches, a.reps, a.matmul_n = 64, '1,2', 2, 512
  out = a.out or (os.path.join(tempfile.gettempdir(), 'bench_deploy_quick')
                  if a.quick else os.path.join(HERE, 'results',
                                               'bench_deploy'))
  models = a.models.split(',')
  batches = [int(b) for b in a.batches.split(',')]
  forms = a.forms.split(',')
  if DEFAULT_FORM not in forms:
    forms.insert(0, DEFAULT_FORM)
  import onnxruntime
  res = {'command': 'python -m experiments.bench_deploy'
                    + (' --quick' if a.quick else ''),
         'args': vars(a), 'cpus': os.cpu_count(),
         'versions': {'onnxruntime': onnxruntime.__version__,
                      'jax': jax.__version__},
         'uptime_start': _uptime(), 'load_start': os.getloadavg()[0],
         'rows': []}
  t0 = time.perf_counter()
  tmp = tempfile.mkdtemp(prefix='bench_deploy_pt_')
  try:
    pt_dir, res['torch_note'] = _torch_exports(a.torch_python, models, a.res,
                                               batches, tmp)
    print(res['torch_note'], flush=True)
    probe = _matmul_probe(a.matmul_n)
    for key in models:
      for b in batches:
        reps = a.reps if b == 1 else max(2, -(-a.reps // 2))
        row = _row(key, b, a.res, a.threads, forms, reps, probe, pt_dir)
        res['rows'].append(row)
        res['elapsed_s'] = time.perf_counter() - t0
        _write(out, res)
        print(row['model'], b, f'matmul {row["matmul_rate"] / 1e9:.1f} GMAC/s',
              {k: round(1e3 * t['min_s'], 1) for k, t in row['times'].items()},
              flush=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  res['uptime_end'] = _uptime()
  res['elapsed_s'] = time.perf_counter() - t0
  _write(out, res)
  print(_md(res))
  print(f'wrote {out}.md and .json in {res["elapsed_s"]:.0f} s')


if __name__ == '__main__':
  main()

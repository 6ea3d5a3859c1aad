"""VEM, calibrated: an eta x lambda_MI sweep, then none / vid / crd / vem.

The test the VEM paper's claim needs (FID on RGB images, the authors'
energy net and EBM settings, EBM diagnostics), on ``configs/pix2pix_omgd.py
:faces`` (edges2faces 64x64, FID/KID on the 1000 test faces):

  # 1. sweep eta in {1, 10, 100} x lambda_MI in {0.1, 1, 10}, VEM, seed 0
  python -m experiments.pix2pix_vem_ablation --phase=sweep
  # 2. none / vid / crd / vem at the chosen setting, 3 seeds
  python -m experiments.pix2pix_vem_ablation --phase=final --eta=10 --lambda_mi=1
  # 3. tables + diagnostic curves from whatever runs exist
  python -m experiments.pix2pix_vem_ablation --phase=report

``--config.*`` overrides apply to every run (e.g. a smaller CPU budget:
``--config.total_steps=300 --config.mi.ebm_ch=16``). Each run's workdir is
``<out>/runs/<name>/``; a finished run (results.json present) is reused, so
phases resume. ``--name`` separates budgets. Writes
``<out>/<name>.{md,json}`` and ``<out>/<name>_curves.png`` (the logged
diagnostics over steps, read from the runs' TensorBoard files);
``--verdict_file`` (markdown) is placed under the tables.
"""

import copy
import json
import os
import struct
import sys
import time

import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from configs import common
from gcjax import cli, train

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Distillation config file with :preset.',
    lock_config=True)
_PHASE = flags.DEFINE_enum('phase', 'report', ['sweep', 'final', 'report'],
                           'What to run (report: only the write-up).')
_ETAS = flags.DEFINE_list('etas', ['1', '10', '100'], 'Sweep: step sizes.')
_LAMBDAS = flags.DEFINE_list('lambdas', ['0.1', '1', '10'],
                             'Sweep: lambda_MI values.')
_ETA = flags.DEFINE_float('eta', 100.0, 'Final: Langevin step size.')
_LAMBDA = flags.DEFINE_float('lambda_mi', 0.2, 'Final: lambda_MI.')
_KINDS = flags.DEFINE_list('kinds', ['none', 'vem', 'vid', 'crd'],
                           'Final: mi.kind values, in run order.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Final: seeds.')
_OUT = flags.DEFINE_string('out', 'experiments/results', 'Output folder.')
_NAME = flags.DEFINE_string('name', 'pix2pix_vem_ablation', 'Result name.')
_VERDICT = flags.DEFINE_string('verdict_file', '', 'Markdown to include.')

# Logged diagnostics drawn as curves (train-step metrics).
CURVES = ('ebm/gap', 'ebm/e_pos', 'ebm/move_noise_ratio', 's/mi_grad_ratio',
          's/loss', 's/l1')
PROBES = ('ebm_shuffle_gap', 'ebm_shuffle_acc', 'ebm_neg_gap')
METRICS = ('fid', 'kid', 'lpips', 'psnr', 'ssim', 'agree_psnr')
DIAG = ('ebm/gap', 'ebm/e_pos', 'ebm/move_noise_ratio', 's/mi_grad_ratio')


def run_name(kind, seed, eta=None, lam=None):
  if kind == 'none':
    return f'{kind}_s{seed}'
  if kind != 'vem':
    return f'{kind}_lam{lam:g}_s{seed}'
  return f'{kind}_eta{eta:g}_lam{lam:g}_s{seed}'


def one(config, wd, *, kind, seed, eta=None, lam=None):
  """Runs (or reuses) one training run; returns its results.json."""
  path = os.path.join(wd, 'results.json')
  if not os.path.exists(path):
    c = copy.deepcopy(config)
    with c.unlocked():
      c.mi.kind = kind
      c.seed = seed
      if eta is not None:
        c.mi.step_size = float(eta)
      if lam is not None:
        c.mi.lambda_mi = float(lam)
      if kind == 'vem' and 'ebm' not in c.evals:   # held-out EBM probes
        c.evals.ebm = common.ebm_probe_eval(
            'tgt' if c.mi.positive == 'target' else 'teacher')
    c.lock()
    t = time.time()
    train.run(c, wd)
    print(f'{os.path.basename(wd)}: {time.time() - t:.0f}s', flush=True)
  with open(path) as f:
    return json.load(f)


def _records(path):
  """The serialized records of a TFRecord file (crc fields unchecked)."""
  with open(path, 'rb') as f:
    data = f.read()
  i = 0
  while i + 12 <= len(data):
    n, = struct.unpack('<Q', data[i:i + 8])
    yield data[i + 12:i + 12 + n]
    i += 12 + n + 4


def read_curves(wd, tags=CURVES):
  """{tag: ([steps], [values])} from a run's TensorBoard event files."""
  from tensorboardX.proto import event_pb2
  out = {}
  files = sorted(f for f in os.listdir(wd) if 'tfevents' in f)
  for name in files:
    for rec in _records(os.path.join(wd, name)):
      ev = event_pb2.Event.FromString(rec)
      for v in ev.summary.value:
        if v.tag in tags:
          s, vals = out.setdefault(v.tag, ([], []))
          s.append(ev.step)
          vals.append(v.simple_value)
  return out


def plot_curves(curves, path, tags=CURVES):
  """One panel per tag, one line per run (PIL; symlog-free linear axes)."""
  from PIL import Image, ImageDraw
  colors = [(120, 120, 120), (178, 34, 34), (70, 130, 180), (218, 165, 32),
            (46, 139, 87), (148, 0, 211), (255, 140, 0), (0, 0, 0),
            (199, 21, 133)]
  wp, hp, pad = 360, 220, 34
  img = Image.new('RGB', (wp * 3, (hp + 2 * pad) * 2 + 20 * len(curves)),
                  'white')
  d = ImageDraw.Draw(img)
  runs = list(curves)
  for j, tag in enumerate(tags):
    x0, y0 = (j % 3) * wp, (j // 3) * (hp + 2 * pad)
    series = [curves[r][tag] for r in runs if tag in curves[r]]
    if not series:
      continue
    xs = np.concatenate([s[0] for s in series])
    ys = np.concatenate([s[1] for s in series])
    ys = ys[np.isfinite(ys)]
    lo, hi = float(np.min(ys)), float(np.max(ys))
    hi = hi if hi > lo else lo + 1e-12
    xmax = max(float(np.max(xs)), 1.0)
    d.text((x0 + 8, y0 + 4), f'{tag}  [{lo:.3g}, {hi:.3g}]', fill='black')
    d.rectangle([x0 + pad, y0 + pad, x0 + wp - 10, y0 + pad + hp],
                outline=(200, 200, 200))
    for i, r in enumerate(runs):
      if tag not in curves[r]:
        continue
      s, v = curves[r][tag]
      pts = [(x0 + pad + (wp - pad - 10) * st / xmax,
              y0 + pad + hp - hp * (val - lo) / (hi - lo))
             for st, val in zip(s, v) if np.isfinite(val)]
      if len(pts) > 1:
        d.line(pts, fill=colors[i % len(colors)], width=2)
  y = (hp + 2 * pad) * 2
  for i, r in enumerate(runs):
    d.text((10, y + 20 * i), r, fill=colors[i % len(colors)])
  img.save(path)


def _cell(vals):
  vals = [v for v in vals if isinstance(v, (int, float))]
  if not vals:
    return '-'
  if len(vals) == 1:
    return f'{vals[0]:.4g}'
  return f'{np.mean(vals):.4g} ± {np.std(vals, ddof=1):.2g}'


def table(groups, res, curves):
  """Markdown rows: one per group of runs, student metrics + diagnostics."""
  cols = [*METRICS, *PROBES, *DIAG]
  lines = ['| run | n | ' + ' | '.join(cols) + ' |',
           '|---|---|' + '---|' * len(cols)]
  for g, names in groups.items():
    cells = []
    for c in cols:
      if '/' in c:   # last logged value (a resumed run's results lack it)
        vals = [res[n]['_run']['last_losses'].get(
            c, curves[n][c][1][-1] if c in curves[n] else None)
                for n in names]
      else:
        vals = [res[n].get('student', {}).get(c) for n in names]
      cells.append(_cell(vals))
    lines.append(f'| {g} | {len(names)} | ' + ' | '.join(cells) + ' |')
  return lines


def unfinished_lines(names, curves):
  """Last logged diagnostics of runs that have no results yet."""
  if not names:
    return []
  lines = ['Unfinished runs (no evaluation yet): last logged diagnostics.', '',
           '| run | step | ' + ' | '.join(DIAG) + ' |',
           '|---|---|' + '---|' * len(DIAG)]
  for n in names:
    c = curves[n]
    step = max((s[0][-1] for s in c.values() if s[0]), default=0)
    cells = [f'{c[d][1][-1]:.4g}' if d in c else '-' for d in DIAG]
    lines.append(f'| {n} | {step} | ' + ' | '.join(cells) + ' |')
  return [*lines, '']


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  spec = config_flags.get_config_filename(flags.FLAGS['config'])
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  runs_dir = os.path.join(_OUT.value, 'runs', _NAME.value)
  t0 = time.time()
  if _PHASE.value == 'sweep':
    for eta in map(float, _ETAS.value):
      for lam in map(float, _LAMBDAS.value):
        n = run_name('vem', 0, eta, lam)
        one(config, os.path.join(runs_dir, n), kind='vem', seed=0, eta=eta,
            lam=lam)
  elif _PHASE.value == 'final':
    for seed in map(int, _SEEDS.value):
      for kind in _KINDS.value:
        mi_kw = {} if kind == 'none' else dict(lam=_LAMBDA.value)
        if kind == 'vem':
          mi_kw['eta'] = _ETA.value
        n = run_name(kind, seed, mi_kw.get('eta'), mi_kw.get('lam'))
        one(config, os.path.join(runs_dir, n), kind=kind, seed=seed,
            **mi_kw)
  # Report over every finished run.
  res, curves = {}, {}
  names = sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []
  unfinished = []
  for n in names:
    path = os.path.join(runs_dir, n, 'results.json')
    curves[n] = read_curves(os.path.join(runs_dir, n))
    if os.path.exists(path):
      with open(path) as f:
        res[n] = json.load(f)
    elif curves[n]:
      unfinished.append(n)
  groups = {}
  for n in res:
    groups.setdefault(n.rsplit('_s', 1)[0], []).append(n)
  lines = [f'# VEM ablation: {_NAME.value}', '',
           f'Config `{spec}`, overrides {overrides or "none"}. Student test '
           'metrics (mean ± std over seeds where n > 1); `ebm_*` are the '
           'held-out probes (`ebm_probe` evaluator); `ebm/...` and '
           '`s/mi_grad_ratio` are the last logged train-step diagnostics '
           '(mean over the last log window). Lower is better for fid, kid, '
           'lpips; higher for psnr, ssim, agree_psnr. Report written in '
           f'{time.time() - t0:.0f}s (run times are printed per run).', '',
           *table(groups, res, curves), '',
           *unfinished_lines(unfinished, curves),
           f'![diagnostic curves]({_NAME.value}_curves.png)', '']
  if _VERDICT.value:
    with open(_VERDICT.value) as f:
      lines += [f.read()]
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, f'{_NAME.value}.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(_OUT.value, f'{_NAME.value}.json'), 'w') as f:
    json.dump({n: {'student': r.get('student'),
                   'last_losses': r['_run']['last_losses']}
               for n, r in res.items()}, f, indent=2, default=float)
  if curves:
    plot_curves(curves, os.path.join(_OUT.value, f'{_NAME.value}_curves.png'))
  print('\n'.join(lines))


if __name__ == '__main__':
  cli.run(main, os.path.basename(sys.argv[0]),
          defaults=['--config=configs/pix2pix_omgd.py:faces'])

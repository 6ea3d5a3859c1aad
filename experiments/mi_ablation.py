"""The VEM paper's MI ablation in miniature: none / vid / crd / vem x seeds.

Runs ``gcjax.train.run`` for every (mi.kind, seed) pair of a distillation
config at the same budget, then writes a markdown table (mean ± std of the
student's test metrics) and a PNG bar chart.

Usage (from the repository root):
  python -m experiments.mi_ablation \\
      --config=configs/pix2pix_omgd.py[:preset] \\
      [--kinds=none,vid,crd,vem] [--seeds=0,1,2] \\
      [--config.loss.style=0 --config.total_steps=800 ...] \\
      [--drop_evals=fid,lpips] [--out=experiments/results]

``--config`` defaults to ``configs/pix2pix_omgd.py`` (default preset);
``--config.*`` overrides set config fields for every run (the config is
locked: a misspelled key is an error). ``mi.kind`` and ``seed`` are set per
run. Each run's workdir is kept under ``<out>/runs/``; a run that already
finished (results.json present) is not repeated, so the sweep can be
resumed. Bad input is one line and exit status 2 (``--verbose`` for the
traceback).
"""

import copy
import json
import os
import sys
import time

import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from gcjax import cli, train

DEFAULT_CONFIG = 'configs/pix2pix_omgd.py'
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Distillation config file, optionally with :preset.',
    lock_config=True)
_KINDS = flags.DEFINE_list('kinds', ['none', 'vid', 'crd', 'vem'],
                           'mi.kind values.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds.')
_OUT = flags.DEFINE_string('out', 'experiments/results', 'Output folder.')
_NAME = flags.DEFINE_string('name', '', 'Result name (default: the config '
                            'file name).')
_DROP = flags.DEFINE_list('drop_evals', [], 'Evaluator names to skip (e.g. '
                          'fid).')

# Panels of the bar chart, where the runs report them.
PLOTTED = ('psnr', 'ssim', 'agree_psnr', 'agree_ssim', 'fid',
           'fid_vs_teacher', 'lpips', 'agree_lpips')
HIGHER_IS_BETTER = {'psnr', 'ssim', 'agree_psnr', 'agree_ssim', 'domain_is'}


def build_config(config, kind, seed, drop_evals=()):
  """A copy of ``config`` with ``mi.kind``, ``seed`` and fewer evaluators."""
  c = copy.deepcopy(config)
  with c.unlocked():
    c.mi.kind = kind
    c.seed = seed
    for name in drop_evals:
      if name in c.evals:
        del c.evals[name]
  c.lock()
  return c


def summarize(rows, model='student'):
  """{kind: {metric: (mean, std, n)}} over seeds."""
  out = {}
  for kind, results in rows.items():
    metrics = {}
    for k in results[0][model]:
      vals = [r[model][k] for r in results
              if isinstance(r[model].get(k), (int, float))]
      if vals:
        metrics[k] = (float(np.mean(vals)), float(np.std(vals, ddof=1))
                      if len(vals) > 1 else 0.0, len(vals))
    out[kind] = metrics
  return out


def to_markdown(summary, title, notes):
  kinds = list(summary)
  keys = [k for k in summary[kinds[0]] if not k.startswith(('params', 'macs',
                                                             'flops',
                                                             'latency'))]
  lines = [f'# {title}', '', *notes, '',
           '| mi.kind | ' + ' | '.join(keys) + ' |',
           '|---|' + '---|' * len(keys)]
  for kind in kinds:
    cells = []
    for k in keys:
      m, s, n = summary[kind][k]
      cells.append(f'{m:.4g} ± {s:.2g}')
    lines.append(f'| {kind} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot(summary, metrics, path):
  """Bar chart (mean, ±std whiskers) per metric, drawn with PIL."""
  from PIL import Image, ImageDraw
  kinds = list(summary)
  metrics = [m for m in metrics if m in summary[kinds[0]]]
  w_panel, h, pad = 260, 240, 30
  img = Image.new('RGB', (w_panel * len(metrics), h + 2 * pad), 'white')
  d = ImageDraw.Draw(img)
  colors = [(120, 120, 120), (70, 130, 180), (218, 165, 32), (178, 34, 34)]
  for j, m in enumerate(metrics):
    x0 = j * w_panel
    vals = [summary[k][m] for k in kinds]
    hi = max(v[0] + v[1] for v in vals)
    lo = min(0.0, min(v[0] - v[1] for v in vals))
    scale = (h - 20) / max(hi - lo, 1e-12)
    base_y = pad + h - (0 - lo) * scale
    d.text((x0 + 10, 5), m, fill='black')
    bw = (w_panel - 40) // len(kinds)
    for i, (k, (mean, std, _)) in enumerate(zip(kinds, vals)):
      bx = x0 + 20 + i * bw
      top = pad + h - (mean - lo) * scale
      d.rectangle([bx + 4, min(top, base_y), bx + bw - 4, max(top, base_y)],
                  fill=colors[i % len(colors)])
      cx = bx + bw // 2
      d.line([cx, pad + h - (mean + std - lo) * scale, cx,
              pad + h - (mean - std - lo) * scale], fill='black', width=2)
      d.text((bx + 4, pad + h + 5), k, fill='black')
  img.save(path)


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file at INFO.
  spec = flags.FLAGS['config'].value and config_flags.get_config_filename(
      flags.FLAGS['config'])
  path, _, preset = spec.partition(':')
  name = _NAME.value or os.path.splitext(os.path.basename(path))[0]
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  out_dir = _OUT.value
  seeds = ','.join(_SEEDS.value)
  rows = {}
  t_start = time.time()
  for kind in _KINDS.value:
    for seed in [int(s) for s in _SEEDS.value]:
      wd = os.path.join(out_dir, 'runs', f'{name}_mi_{kind}_s{seed}')
      res_path = os.path.join(wd, 'results.json')
      if not os.path.exists(res_path):
        t = time.time()
        train.run(build_config(_CONFIG.value, kind, seed, _DROP.value), wd)
        print(f'{kind} seed {seed}: {time.time() - t:.0f}s', flush=True)
      with open(res_path) as f:
        rows.setdefault(kind, []).append(json.load(f))
  summary = summarize(rows)
  notes = [f'Config `{path}:{preset or "default"}`, overrides '
           f'{overrides or "none"}, seeds {seeds}; student test '
           f'metrics, mean ± std over seeds. Total wall time '
           f'{time.time() - t_start:.0f}s.',
           'Higher is better for psnr/ssim/agree_psnr/agree_ssim; lower for '
           'l1/agree_l1/fid/kid/lpips.']
  md = to_markdown(summary, f'MI ablation: {name}', notes)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f'{name}_mi_ablation.md'), 'w') as f:
    f.write(md)
  with open(os.path.join(out_dir, f'{name}_mi_ablation.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  plot(summary, PLOTTED,
       os.path.join(out_dir, f'{name}_mi_ablation.png'))
  print(md)


def run(default_config: str = DEFAULT_CONFIG) -> None:
  """Runs :func:`main` with ``--config=default_config`` unless given."""
  cli.run(main, os.path.basename(sys.argv[0]),
          defaults=[f'--config={default_config}'])


if __name__ == '__main__':
  run()

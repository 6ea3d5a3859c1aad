"""The VEM paper's MI ablation in miniature: none / vid / crd / vem x seeds.

Runs ``gcjax.train.run`` for every (mi.kind, seed) pair of a distillation
config at the same budget, then writes a markdown table (mean ± std of the
student's test metrics) and a PNG bar chart.

Usage:
  python experiments/mi_ablation.py --config=configs/pix2pix_omgd.py \\
      [--preset=default] [--kinds=none,vid,crd,vem] [--seeds=0,1,2] \\
      [--set loss.style=0 --set total_steps=800 ...] [--drop_evals=fid,lpips]
      [--out=experiments/results]

``--set key=value`` overrides config fields for every run (values parsed as
Python literals). Each run's workdir is kept under ``<out>/runs/``; a run
that already finished (results.json present) is not repeated, so the sweep
can be resumed.
"""

import argparse
import ast
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from gcjax import config_base, train  # noqa: E402

# Panels of the bar chart, where the runs report them.
PLOTTED = ('psnr', 'ssim', 'agree_psnr', 'agree_ssim', 'fid',
           'fid_vs_teacher', 'lpips', 'agree_lpips')
HIGHER_IS_BETTER = {'psnr', 'ssim', 'agree_psnr', 'agree_ssim', 'domain_is'}


def _set(config, dotted: str, value) -> None:
  *path, last = dotted.split('.')
  node = config
  for p in path:
    node = node[p]
  node[last] = value


def build_config(path, preset, kind, seed, overrides, drop_evals=()):
  mod = config_base.sibling(os.path.splitext(os.path.basename(path))[0],
                            path)
  c = mod.build(kind, preset) if hasattr(mod, 'build') else mod.get_config(
      preset)
  c.mi.kind = kind
  c.seed = seed
  for name in drop_evals:
    if name in c.evals:
      del c.evals[name]
  for kv in overrides:
    k, v = kv.split('=', 1)
    try:
      v = ast.literal_eval(v)
    except (ValueError, SyntaxError):
      pass
    _set(c, k, v)
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


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--config', default='configs/pix2pix_omgd.py')
  p.add_argument('--preset', default='default')
  p.add_argument('--kinds', default='none,vid,crd,vem')
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--set', action='append', default=[], dest='overrides')
  p.add_argument('--out', default='experiments/results')
  p.add_argument('--name', default='')
  p.add_argument('--drop_evals', default='',
                 help='comma-separated evaluator names to skip (e.g. fid)')
  args = p.parse_args()
  name = args.name or os.path.splitext(os.path.basename(args.config))[0]
  rows = {}
  t_start = time.time()
  for kind in args.kinds.split(','):
    for seed in [int(s) for s in args.seeds.split(',')]:
      wd = os.path.join(args.out, 'runs', f'{name}_mi_{kind}_s{seed}')
      res_path = os.path.join(wd, 'results.json')
      if not os.path.exists(res_path):
        t = time.time()
        drop = [d for d in args.drop_evals.split(',') if d]
        train.run(build_config(args.config, args.preset, kind, seed,
                               args.overrides, drop), wd)
        print(f'{kind} seed {seed}: {time.time() - t:.0f}s', flush=True)
      with open(res_path) as f:
        rows.setdefault(kind, []).append(json.load(f))
  summary = summarize(rows)
  notes = [f'Config `{args.config}:{args.preset}`, overrides '
           f'{args.overrides or "none"}, seeds {args.seeds}; student test '
           f'metrics, mean ± std over seeds. Total wall time '
           f'{time.time() - t_start:.0f}s.',
           'Higher is better for psnr/ssim/agree_psnr/agree_ssim; lower for '
           'l1/agree_l1/fid/kid/lpips.']
  md = to_markdown(summary, f'MI ablation: {name}', notes)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, f'{name}_mi_ablation.md'), 'w') as f:
    f.write(md)
  with open(os.path.join(args.out, f'{name}_mi_ablation.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  plot(summary, PLOTTED,
       os.path.join(args.out, f'{name}_mi_ablation.png'))
  print(md)


if __name__ == '__main__':
  main()

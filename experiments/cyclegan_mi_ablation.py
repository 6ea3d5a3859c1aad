"""The VEM paper's MI ablation in miniature, on the CycleGAN default preset.

Distills the pretrained vintagify teacher into the MobileResNet student
(``configs/cyclegan_omgd.py`` default preset) with ``mi.kind`` in
none / vid / crd / vem, 3 seeds each, the same number of steps for every
run. Writes ``experiments/results/cyclegan_mi_ablation.{md,png,json}``: mean
± std over seeds of the student's agreement with the teacher on held-out
photos (PSNR, SSIM, LPIPS) and FID/KID of student outputs against teacher
outputs. Runs whose ``results.json`` exists are reused, so the script can be
re-run after an interruption.

  python experiments/cyclegan_mi_ablation.py [--steps 150] [--seeds 3] \\
      [--workdir /tmp/cyclegan_mi_ablation]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gcjax import config_base, train  # noqa: E402

KINDS = ('none', 'vid', 'crd', 'vem')
# (result key, column title, higher is better)
METRICS = (('agree_psnr', 'PSNR to teacher (dB)', True),
           ('agree_ssim', 'SSIM to teacher', True),
           ('agree_lpips', 'LPIPS to teacher', False),
           ('fid_vs_reference', 'FID vs teacher', False),
           ('kid_vs_reference', 'KID vs teacher', False))


def run_one(kind: str, seed: int, steps: int, workdir: str) -> dict:
  path = os.path.join(workdir, 'results.json')
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  mod = config_base.sibling('cyclegan_omgd',
                            os.path.join(ROOT, 'configs', 'x.py'))
  c = mod.build(kind, 'default')
  c.seed = seed
  c.total_steps = steps
  for o in c.optim.values():
    o.decay_start = steps // 2
  c.ckpt_every = steps
  c.lock()
  return train.run(c, workdir)


def table(rows: dict[str, list[dict]], steps: int) -> str:
  head = ['mi.kind'] + [t for _, t, _ in METRICS]
  lines = ['# CycleGAN (vintagify -> MobileResNet ngf 16) MI ablation', '',
           f'{steps} steps per run, mean ± std over seeds '
           f'({", ".join(str(len(v)) for v in rows.values())} runs).', '',
           '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for kind, runs in rows.items():
    cells = [kind]
    for key, _, _ in METRICS:
      vals = np.array([r['student'][key] for r in runs
                       if key in r['student']])
      if len(vals) == 0:
        cells.append('')
        continue
      std = vals.std(ddof=1) if len(vals) > 1 else 0.0
      cells.append(f'{vals.mean():.4g} ± {std:.2g}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot(rows: dict[str, list[dict]], path: str) -> None:
  """Bar chart (mean, std whiskers, seeds as dots) of LPIPS and PSNR."""
  from PIL import Image, ImageDraw
  panels = [('agree_lpips', 'LPIPS to teacher (lower is better)'),
            ('agree_psnr', 'PSNR to teacher, dB (higher is better)')]
  w, h, pad = 420, 300, 40
  img = Image.new('RGB', (w * len(panels), h), 'white')
  d = ImageDraw.Draw(img)
  colors = [(120, 120, 120), (70, 130, 180), (60, 160, 90), (200, 80, 60)]
  for p, (key, title) in enumerate(panels):
    x0 = p * w
    d.text((x0 + pad, 8), title, fill='black')
    vals = {k: np.array([r['student'][key] for r in runs])
            for k, runs in rows.items()}
    top = max(float(v.max()) for v in vals.values()) * 1.15 or 1.0
    ybase, yh = h - pad, h - 2 * pad

    def y(v, ybase=ybase, yh=yh, top=top):
      return ybase - yh * v / top

    d.line([(x0 + pad, ybase), (x0 + w - 10, ybase)], fill='black')
    d.line([(x0 + pad, ybase), (x0 + pad, pad)], fill='black')
    d.text((x0 + 4, pad - 6), f'{top:.3g}', fill='black')
    bw = (w - 2 * pad) / len(vals)
    for i, (kind, v) in enumerate(vals.items()):
      cx = x0 + pad + bw * (i + 0.5)
      m = float(v.mean())
      s = float(v.std(ddof=1)) if len(v) > 1 else 0.0
      d.rectangle([cx - bw * 0.3, y(m), cx + bw * 0.3, ybase],
                  fill=colors[i % len(colors)])
      d.line([(cx, y(m - s)), (cx, y(m + s))], fill='black', width=2)
      for val in v:
        d.ellipse([cx - 3, y(val) - 3, cx + 3, y(val) + 3], outline='black')
      d.text((cx - 12, ybase + 6), kind, fill='black')
      d.text((cx - 18, y(m) - 14), f'{m:.3g}', fill='black')
  img.save(path)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--steps', type=int, default=150)
  ap.add_argument('--seeds', type=int, default=3)
  ap.add_argument('--kinds', default=','.join(KINDS))
  ap.add_argument('--workdir', default='/tmp/cyclegan_mi_ablation')
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments',
                                                'results'))
  args = ap.parse_args()
  rows = {}
  for kind in args.kinds.split(','):
    rows[kind] = [run_one(kind, s, args.steps,
                          os.path.join(args.workdir, f'{kind}_s{s}'))
                  for s in range(args.seeds)]
  os.makedirs(args.out, exist_ok=True)
  md = table(rows, args.steps)
  base = os.path.join(args.out, 'cyclegan_mi_ablation')
  with open(base + '.md', 'w') as f:
    f.write(md)
  with open(base + '.json', 'w') as f:
    json.dump({k: [r['student'] for r in v] for k, v in rows.items()}, f,
              indent=2, default=float)
  plot(rows, base + '.png')
  print(md)


if __name__ == '__main__':
  main()

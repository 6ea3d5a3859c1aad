"""Aguinaldo et al.'s figure in miniature: student quality vs parameter count.

For one Fashion-MNIST DCGAN teacher, trains students of several depth
scales d with each of ``mse`` (distillation alone), ``joint`` (distillation
+ adversarial) and ``scratch`` (the same network trained as a plain GAN,
same steps and batch), then writes a markdown table and a PNG plot of FID
(vs real test images), domain Inception Score and variance of the Laplacian
against the student's parameter count.

Run from the repository root (the teacher is trained first unless
--teacher_export is given):
  python -m experiments.fashion_kd_sweep --steps=300 --teacher_steps=1000
  python -m experiments.fashion_kd_sweep \\
      --teacher_export=runs/t/export --student_ds=2,4,8,16
  python -m experiments.fashion_kd_sweep --config.optim.s.lr=1e-3 \\
      --teacher_config.loss.adversarial=wgan-gp

Student runs start from ``--config`` (default ``configs/fashion_kd.py``),
the teacher run from ``--teacher_config`` (``configs/dcgan_teacher.py``);
both take ``:preset`` and ``--config.*`` / ``--teacher_config.*``
overrides. The sweep's own flags (--steps, --student_ds, ...) are applied
on top.

Runs are kept under --workdir; a run with a results.json is not redone, so
an interrupted sweep resumes. Output: --out (markdown) and the PNG next to
it.
"""

from __future__ import annotations

import copy
import json
import math
import os

from absl import flags, logging
from ml_collections import config_flags

from gcjax import cli, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Student (kd) config file, optionally with :preset '
    '(default configs/fashion_kd.py).', lock_config=True)
_TEACHER_CONFIG = config_flags.DEFINE_config_file(
    'teacher_config', None, 'Teacher (gan/dcgan) config file, optionally '
    'with :preset (default configs/dcgan_teacher.py).', lock_config=True)
flags.DEFINE_string('workdir', 'runs/fashion_kd_sweep', 'Root of the runs.')
flags.DEFINE_string('out', os.path.join(ROOT, 'experiments', 'results',
                                        'fashion_kd_sweep.md'),
                    'Markdown report (the PNG is written next to it).')
flags.DEFINE_string('teacher_export', '',
                    'Export dir of a dcgan_teacher run; empty: train one.')
flags.DEFINE_integer('teacher_d', 32, 'Teacher depth scale (if trained).')
flags.DEFINE_integer('teacher_steps', 2000, 'Teacher steps (if trained).')
flags.DEFINE_list('student_ds', ['4', '8', '16'], 'Student depth scales.')
flags.DEFINE_list('kinds', ['mse', 'joint', 'scratch'], 'loss.kind values.')
flags.DEFINE_integer('steps', 1500, 'Steps of every student run.')
flags.DEFINE_integer('fid_limit', 512, 'Samples (and test images) for FID.')
flags.DEFINE_integer('sample_limit', 2000, 'Samples for domain IS/sharpness.')

METRICS = (('fid', 'FID vs real test images', False),
           ('domain_is', 'domain IS', True),
           ('laplacian_var', 'variance of the Laplacian', True))
COLORS = {'mse': (31, 119, 180), 'joint': (214, 39, 40),
          'scratch': (44, 160, 44), 'teacher': (90, 90, 90),
          'real': (148, 103, 189)}


def _run(config, workdir: str) -> dict:
  path = os.path.join(workdir, 'results.json')
  if os.path.exists(path):
    logging.info('reusing %s', path)
  else:
    train.run(config, workdir)
  with open(path) as f:
    return json.load(f)


def _set_evals(c) -> None:
  c.evals.fid.limit = FLAGS.fid_limit
  c.evals.fid.kid_subset_size = min(c.evals.fid.kid_subset_size,
                                    FLAGS.fid_limit)
  for name in ('is', 'laplacian', 'image'):
    c.evals[name].limit = FLAGS.sample_limit


def sweep() -> tuple[dict, list[dict]]:
  """Runs the grid; returns (teacher row, student rows)."""
  export = FLAGS.teacher_export
  if not export:
    c = copy.deepcopy(_TEACHER_CONFIG.value)
    c.generator.d = c.disc.d = FLAGS.teacher_d
    c.total_steps = FLAGS.teacher_steps
    with c.unlocked():
      c.evals = {'cost': c.evals.cost.to_dict()}
    t_dir = os.path.join(FLAGS.workdir, f'teacher_d{FLAGS.teacher_d}')
    _run(c, t_dir)
    export = os.path.join(t_dir, 'export')
  rows, teacher = [], None
  for kind in FLAGS.kinds:
    for d in (int(x) for x in FLAGS.student_ds):
      c = copy.deepcopy(_CONFIG.value)
      c.teacher.init = f'run:{export}'
      c.student.d = d
      c.loss.kind = kind
      c.total_steps = FLAGS.steps
      c.ckpt_every = FLAGS.steps
      _set_evals(c)
      res = _run(c, os.path.join(FLAGS.workdir, f'{kind}_d{d}'))
      teacher = teacher or {'kind': 'teacher', **res['teacher']}
      rows.append({'kind': kind, 'd': d, **res['student'],
                   'real': res.get('real', {})})
  return teacher, rows


def _fmt(v, nd=3):
  if v is None:
    return ''
  return f'{v:.{nd}g}' if isinstance(v, float) else str(v)


def markdown(teacher: dict, rows: list[dict], png: str) -> str:
  cols = [('params', 'params'), ('macs_true', 'MACs (true)'),
          ('fid', 'FID'), ('kid', 'KID'), ('domain_is', 'domain IS'),
          ('laplacian_var', 'Laplacian var'), ('agree_psnr', 'PSNR vs T'),
          ('agree_ssim', 'SSIM vs T')]
  lines = ['# Fashion-MNIST GAN distillation sweep', '',
           f'Teacher: `{FLAGS.teacher_export or "trained here"}`; student '
           f'runs: {FLAGS.steps} steps each; FID/KID on {FLAGS.fid_limit} '
           f'samples vs as many real test images; IS, sharpness and '
           f'agreement with the teacher (same z) on {FLAGS.sample_limit} '
           'samples.', '',
           '| model | d | ' + ' | '.join(h for _, h in cols) + ' |',
           '|' + '---|' * (len(cols) + 2)]
  real = next((r['real'] for r in rows if r.get('real')), {})
  for r in [teacher, *rows]:
    lines.append(f"| {r['kind']} | {r.get('d', '')} | " + ' | '.join(
        _fmt(r.get(k)) for k, _ in cols) + ' |')
  if real:
    lines.append('| real test images |  | ' + ' | '.join(
        _fmt(real.get(k)) for k, _ in cols) + ' |')
  lines += ['', f'![quality vs parameters]({os.path.basename(png)})', '']
  return '\n'.join(lines)


def plot(teacher: dict, rows: list[dict], path: str) -> None:
  """One panel per metric: value vs log10(params), a line per loss kind."""
  from PIL import Image, ImageDraw
  w, h, m = 360, 280, 50
  img = Image.new('RGB', (w * len(METRICS), h + 40), 'white')
  draw = ImageDraw.Draw(img)
  kinds = list(dict.fromkeys(r['kind'] for r in rows))
  for p, (key, title, higher) in enumerate(METRICS):
    ox = p * w
    pts = [(math.log10(r['params']), r[key]) for r in rows if key in r]
    if not pts:
      continue
    ref = teacher.get(key)
    ys = [y for _, y in pts] + ([ref] if ref is not None else [])
    xs = [x for x, _ in pts]
    x0, x1 = min(xs) - 0.1, max(xs) + 0.1
    y0, y1 = min(ys), max(ys)
    pad = 0.08 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad

    def to_px(x, y, ox=ox, x0=x0, x1=x1, y0=y0, y1=y1):
      return (ox + m + (x - x0) / (x1 - x0) * (w - 1.5 * m),
              h - m + 10 - (y - y0) / (y1 - y0) * (h - 1.5 * m))

    draw.rectangle([ox + m, m / 2 + 10, ox + w - m / 2, h - m + 10],
                   outline=(0, 0, 0))
    arrow = '(higher is better)' if higher else '(lower is better)'
    draw.text((ox + m, 4), f'{title} {arrow}', fill=(0, 0, 0))
    for t in range(3):
      yv = y0 + (y1 - y0) * (t + 0.5) / 3
      _, py = to_px(x0, yv)
      draw.text((ox + 4, py - 5), f'{yv:.3g}', fill=(0, 0, 0))
    for xv in sorted(set(xs)):
      px, _ = to_px(xv, y0)
      draw.text((px - 14, h - m + 14), f'{10 ** xv / 1e3:.0f}k',
                fill=(0, 0, 0))
    if ref is not None:
      a, b = to_px(x0, ref), to_px(x1, ref)
      for s in range(int(a[0]), int(b[0]), 8):
        draw.line([(s, a[1]), (min(s + 4, b[0]), a[1])],
                  fill=COLORS['teacher'])
    for kind in kinds:
      kp = sorted((math.log10(r['params']), r[key]) for r in rows
                  if r['kind'] == kind and key in r)
      px = [to_px(x, y) for x, y in kp]
      if len(px) > 1:
        draw.line(px, fill=COLORS.get(kind, (0, 0, 0)), width=2)
      for x, y in px:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3],
                     fill=COLORS.get(kind, (0, 0, 0)))
  legend = [*kinds, 'teacher']
  for i, name in enumerate(legend):
    x = 10 + i * 110
    draw.rectangle([x, h + 18, x + 14, h + 30], fill=COLORS.get(name))
    draw.text((x + 20, h + 18), name + (' (dashed)' if name == 'teacher'
                                        else ''), fill=(0, 0, 0))
  draw.text((w * len(METRICS) - 220, h + 18), 'x: student parameters (log)',
            fill=(0, 0, 0))
  img.save(path)


def main(argv) -> None:
  del argv
  teacher, rows = sweep()
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  png = os.path.splitext(FLAGS.out)[0] + '.png'
  plot(teacher, rows, png)
  with open(FLAGS.out, 'w') as f:
    f.write(markdown(teacher, rows, png))
  print(f'wrote {FLAGS.out} and {png}')


if __name__ == '__main__':
  cli.run(main, 'experiments.fashion_kd_sweep', defaults=[
      f'--config={os.path.join(ROOT, "configs", "fashion_kd.py")}',
      '--teacher_config='
      f'{os.path.join(ROOT, "configs", "dcgan_teacher.py")}'])

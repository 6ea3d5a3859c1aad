"""KDIT in miniature: distilled vs from-scratch students with N images per
class of Fashion-MNIST.

Chains: a style-based teacher with mixing regularization
(``configs/kdit_teacher.py``; skipped with --teacher) -> stage 1, data-free
distillation of each student (``configs/kdit_<student>.py``) -> stage 2 on
N images per class, from stage 1's export (``student.init=run:...``) and
from scratch (``:scratch``), same steps. Writes a markdown table (mFID,
mKID, RC, FC, LPIPS diversity per run), a bar plot of mFID and per-class
sample grids next to --out.

Run from the repository root:
  python -m experiments.kdit_report                        # everything
  python -m experiments.kdit_report --teacher=runs/t --students=i2i \\
      --stage1_steps=500 --stage2_steps=400 --eval_limit=500

Runs live under --workdir; one that has a results.json is reused, so an
interrupted chain resumes.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags, logging

from configs import kdit_i2i, kdit_teacher, kdit_x2i

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', 'runs/kdit_report', 'Root of the runs.')
flags.DEFINE_string('out', os.path.join(ROOT, 'experiments', 'results',
                                        'kdit_report.md'),
                    'Markdown report (PNGs are written next to it).')
flags.DEFINE_string('teacher', '', 'Workdir of a kdit_teacher run; empty: '
                    'train one under --workdir.')
flags.DEFINE_integer('teacher_steps', 3000, 'Teacher steps (if trained).')
flags.DEFINE_list('students', ['i2i', 'x2i'], 'Students: i2i, x2i.')
flags.DEFINE_list('ns', ['10', '50'], 'Training images per class.')
flags.DEFINE_integer('stage1_steps', 2000, 'Stage-1 steps.')
flags.DEFINE_integer('stage2_steps', 2000, 'Stage-2 steps (both arms).')
flags.DEFINE_integer('eval_limit', 1000, 'Test images for every metric.')
flags.DEFINE_integer('fc_steps', 300, 'FC classifier steps.')
flags.DEFINE_list('seeds', ['0'], 'Stage-2 seeds (config.seed and the '
                  'batch order; the N training images and stage 1 stay). '
                  'The first runs at every N, the others at --seed_ns.')
flags.DEFINE_list('seed_ns', ['10'], 'The N at which the seeds after the '
                  'first run too.')
flags.DEFINE_bool('only_existing', False, 'Run nothing: report the stage-2 '
                  'runs that have finished (a results.json) and skip the '
                  'others.')

CONFIGS = {'i2i': kdit_i2i, 'x2i': kdit_x2i}
COLS = (('mfid', 'mFID', 1), ('mkid', 'mKID x100', 100), ('rc', 'RC %', 1),
        ('fc', 'FC %', 1), ('agree_lpips', 'LPIPS div.', 1))


def _run(config, workdir: str) -> tuple[dict, float]:
  """(results, wall seconds of the run that made them; 0: unknown)."""
  from gcjax import train
  path = os.path.join(workdir, 'results.json')
  wall_path = os.path.join(workdir, 'kdit_report_wall.json')
  t0 = time.perf_counter()
  if os.path.exists(path):
    logging.info('reusing %s', path)
  else:
    config.lock()
    train.run(config, workdir)
    with open(wall_path, 'w') as f:
      json.dump({'wall_s': time.perf_counter() - t0}, f)
  wall = 0.0
  if os.path.exists(wall_path):
    with open(wall_path) as f:
      wall = json.load(f)['wall_s']
  with open(path) as f:
    return json.load(f), wall


def _eval_rows(workdir: str) -> int:
  """The test images the run's class_fid scored (its own config)."""
  with open(os.path.join(workdir, 'config.json')) as f:
    return int(json.load(f)['evals']['class_fid']['limit'])


def _seeds(n: int) -> list[int]:
  seeds = [int(x) for x in FLAGS.seeds]
  return seeds if str(n) in FLAGS.seed_ns else seeds[:1]


def stage2_config(cfg, arm: str, n: int, seed: int, stage1: str):
  """Stage 2 of one arm: from ``stage1``'s export or from scratch."""
  opts = f'stage2,n={n}' if arm == 'distilled' else f'scratch,n={n}'
  c = cfg.get_config(opts)
  if arm == 'distilled':
    c.student.init = f'run:{stage1}'
  c.seed = c.data.seed = seed
  c.total_steps = FLAGS.stage2_steps
  c.ckpt_every = FLAGS.stage2_steps
  for ev in c.evals.values():
    if 'limit' in ev:
      ev.limit = FLAGS.eval_limit
  c.evals.class_acc.fc_steps = FLAGS.fc_steps
  return c


def chain() -> tuple[list[dict], dict]:
  """Runs every stage; returns (stage-2 rows, {run name: wall s})."""
  walls = {}
  teacher = FLAGS.teacher
  if not teacher:
    teacher = os.path.join(FLAGS.workdir, 'teacher')
    c = kdit_teacher.get_config()
    c.total_steps = FLAGS.teacher_steps
    walls['teacher'] = _run(c, teacher)[1]
  rows = []
  for student in FLAGS.students:
    cfg = CONFIGS[student]
    s1 = os.path.join(FLAGS.workdir, f'{student}_stage1')
    c = cfg.get_config()
    c.teacher.init = f'run:{teacher}'
    c.total_steps = FLAGS.stage1_steps
    res1, walls[f'{student}_stage1'] = _run(c, s1)
    for n in (int(x) for x in FLAGS.ns):
      for seed in _seeds(n):
        for arm in ('distilled', 'scratch'):
          name = f'{student}_n{n}_{arm}' + (f'_s{seed}' if seed else '')
          workdir = os.path.join(FLAGS.workdir, name)
          if FLAGS.only_existing and not os.path.exists(
              os.path.join(workdir, 'results.json')):
            continue
          res, walls[name] = _run(stage2_config(cfg, arm, n, seed, s1),
                                  workdir)
          rows.append({'student': student, 'n': n, 'arm': arm,
                       'seed': seed, 'workdir': workdir,
                       'eval_rows': _eval_rows(workdir),
                       'stage1': res1.get('student', {}),
                       **res['student']})
  return rows, walls


def sample_grid(workdir: str, student: str, per_class: int = 6,
                seed: int = 0) -> np.ndarray:
  """[10 * 32, per_class * 32] uint8: row c holds class-c samples of the
  run's exported student (I2I: the first test images translated with a
  class-c test reference; X2I: fresh noise with label c)."""
  import jax
  import jax.numpy as jnp

  from gcjax import data, teachers
  test = data.load('fashion', 'test', resolution=32, channels=1)
  img = test['img'].astype(np.float32) / 127.5 - 1.0
  rng = np.random.default_rng(seed)
  rows = []
  if student == 'i2i':
    mod, v = teachers.load(f'run:{workdir}:student')
    src = img[:per_class]
    for c in range(10):
      ref = img[rng.choice(np.flatnonzero(test['label'] == c), per_class)]
      out = mod.apply(v, jnp.concatenate([src, ref], -1))[0]
      rows.append(np.asarray(out))
  else:
    gen, gv = teachers.load(f'run:{workdir}:student')
    emb, ev = teachers.load(f'run:{workdir}:embed')
    z = jax.random.normal(jax.random.key(seed), (per_class, gen.z_dim))
    for c in range(10):
      cvec = emb.apply(ev, jnp.full((per_class,), c, jnp.int32))[0]
      rows.append(np.asarray(gen.apply(gv, z, cvec, None,
                                       method='generate')[0]))
  x = np.clip((np.stack(rows)[..., 0] + 1.0) * 127.5, 0, 255)
  x = x.astype(np.uint8)                       # [10, k, 32, 32]
  return x.transpose(0, 2, 1, 3).reshape(10 * 32, per_class * 32)


def _save_png(array: np.ndarray, path: str, scale: int = 2) -> None:
  from PIL import Image
  Image.fromarray(array).resize((array.shape[1] * scale,
                                 array.shape[0] * scale),
                                Image.Resampling.NEAREST).save(path)


def bar_plot(rows: list[dict], path: str) -> None:
  """mFID per (student, N, seed): distilled (blue) next to scratch
  (orange)."""
  from PIL import Image, ImageDraw
  groups = sorted({(r['student'], r['n'], r.get('seed', 0)) for r in rows})
  top = max(r.get('mfid', 0.0) for r in rows) * 1.1 or 1.0
  w, h, pad = 120 * len(groups) + 60, 320, 40
  im = Image.new('RGB', (w, h), 'white')
  d = ImageDraw.Draw(im)
  d.line([(pad, h - pad), (w - 10, h - pad)], fill='black')
  d.text((5, 5), f'mFID (lower is better), axis top {top:.0f}', fill='black')
  colors = {'distilled': (31, 119, 180), 'scratch': (255, 127, 14)}
  for i, (student, n, seed) in enumerate(groups):
    x0 = pad + 20 + 120 * i
    for j, arm in enumerate(('distilled', 'scratch')):
      r = next((r for r in rows if (r['student'], r['n'], r.get('seed', 0),
                                    r['arm']) == (student, n, seed, arm)),
               None)
      if r is None or 'mfid' not in r:
        continue
      bh = (h - 2 * pad) * r['mfid'] / top
      x = x0 + 40 * j
      d.rectangle([x, h - pad - bh, x + 34, h - pad], fill=colors[arm])
      d.text((x, h - pad - bh - 12), f"{r['mfid']:.0f}", fill='black')
    d.text((x0, h - pad + 6), f'{student} N={n} s{seed}', fill='black')
  d.text((w - 170, 20), 'blue: distilled', fill=colors['distilled'])
  d.text((w - 170, 34), 'orange: scratch', fill=colors['scratch'])
  im.save(path)


def _fmt(v, scale=1):
  return '' if v is None else f'{v * scale:.3g}'


def verdict(student: str, rows: list[dict]) -> str:
  """One line: distilled vs scratch mFID at N=10, per seed and overall."""
  pairs = []
  for seed in sorted({r.get('seed', 0) for r in rows}):
    by = {r['arm']: r for r in rows if r.get('seed', 0) == seed}
    if 'mfid' in by.get('distilled', {}) and 'mfid' in by.get('scratch', {}):
      pairs.append((seed, by['distilled'], by['scratch']))
  if not pairs:
    return f'- **{student}**: no finished distilled/scratch pair at N=10.'
  gaps = [s['mfid'] - d['mfid'] for _, d, s in pairs]
  wins = sum(g > 0 for g in gaps)
  per_seed = '; '.join(
      f"seed {seed} ({d.get('eval_rows', '?')} eval rows): distilled "
      f"{d['mfid']:.1f} vs scratch {s['mfid']:.1f} (RC {_fmt(d.get('rc'))} "
      f"vs {_fmt(s.get('rc'))}, FC {_fmt(d.get('fc'))} vs "
      f"{_fmt(s.get('fc'))})" for seed, d, s in pairs)
  return (f"- **{student}, 10 images per class**: distillation beat "
          f"from-scratch training on mFID in {wins} of {len(pairs)} seed(s); "
          f"mFID gap (scratch - distilled) mean {np.mean(gaps):.1f}, range "
          f"{min(gaps):.1f} to {max(gaps):.1f}. {per_seed}.")


def markdown(rows, walls, plot_name, grids) -> str:
  lines = [
      '# KDIT in miniature: distilled vs from-scratch (Fashion-MNIST 32x32)',
      '',
      f'Teacher: `{FLAGS.teacher or "trained here"}` '
      f'({FLAGS.teacher_steps} steps if trained here). Stage 1: '
      f'{FLAGS.stage1_steps} data-free steps per student. Stage 2: '
      f'{FLAGS.stage2_steps} steps on N images per class, batch 16, from '
      'the stage-1 export (distilled) or random init (scratch). Metrics on '
      f'the first {FLAGS.eval_limit} test images: mFID/mKID per class '
      '(Inception pool3; few images per class, so biased high: compare '
      'rows only with each other), RC (shipped Fashion classifier on the '
      f'generated images), FC (a classifier trained {FLAGS.fc_steps} steps '
      'on the generated images, tested on real ones), LPIPS (AlexNet) '
      'between two outputs of one class (two references / two noises).',
      'Each run\'s own number of scored test images is in the column '
      '"eval rows" (mFID is only comparable at equal eval rows).',
      '', '| student | N | seed | eval rows | arm | '
      + ' | '.join(c[1] for c in COLS)
      + ' | stage-1 agree PSNR |', '|' + '---|' * (len(COLS) + 6)]
  for r in rows:
    lines.append(f"| {r['student']} | {r['n']} | {r.get('seed', 0)} | "
                 f"{r.get('eval_rows', '')} | {r['arm']} | " + ' | '.join(
        _fmt(r.get(k), s) for k, _, s in COLS) + ' | '
        + (_fmt(r['stage1'].get('agree_psnr')) if r['arm'] == 'distilled'
           else '') + ' |')
  lines += ['', f'![mFID]({plot_name})', '']
  verdicts = [verdict(student, [r for r in rows if r['student'] == student
                                 and r['n'] == 10])
              for student in sorted({r['student'] for r in rows})]
  lines += ['## Verdict at N = 10', '', *verdicts, '',
            '## Per-class samples (row = class 0..9)', '']
  for name, png in grids:
    lines += [f'{name}:', '', f'![{name}]({png})', '']
  lines += ['## Wall time (this run, shared 2-core CPU)', '']
  lines += [f'- {k}: ' + (f'{v / 60:.1f} min' if v else 'not recorded')
            for k, v in walls.items()]
  return '\n'.join(lines) + '\n'


def main(argv) -> None:
  del argv
  bad = [s for s in FLAGS.students if s not in CONFIGS]
  if bad:
    raise app.UsageError(f'--students: unknown {bad}; known: i2i, x2i')
  rows, walls = chain()
  out_dir = os.path.dirname(os.path.abspath(FLAGS.out))
  os.makedirs(out_dir, exist_ok=True)
  stem = os.path.splitext(os.path.basename(FLAGS.out))[0]
  plot_name = f'{stem}_mfid.png'
  bar_plot(rows, os.path.join(out_dir, plot_name))
  grids = []
  for r in rows:
    if r['n'] != 10 or r.get('seed', 0):
      continue
    png = f"{stem}_{r['student']}_n10_{r['arm']}.png"
    _save_png(sample_grid(r['workdir'], r['student']),
              os.path.join(out_dir, png))
    grids.append((f"{r['student']} N=10 {r['arm']}", png))
  with open(FLAGS.out, 'w') as f:
    f.write(markdown(rows, walls, plot_name, grids))
  with open(os.path.splitext(FLAGS.out)[0] + '.json', 'w') as f:
    json.dump({'rows': rows, 'walls': walls}, f, indent=2, default=float)
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)

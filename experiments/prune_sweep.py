"""Yu & Pool's appendix in miniature: pruned DCGAN / Pix2Pix generators.

DCGAN (Fashion-MNIST): for one teacher (``gan`` dcgan run; its ``disc`` is
the self-supervised adversary), every sparsity x granularity (fine, filter)
x recipe, where recipes are the appendix's letters:

  b  self-supervised: teacher D (frozen) + lambda * distillation, AGP
  c  smaller dense network from scratch (filter-sized), fresh D
  d  one-shot pruning + naive fine-tuning (original GAN loss, D trains)
  e  gradual (AGP) pruning + naive fine-tuning
  g  one-shot pruning + distillation only
  h  gradual (AGP) pruning + distillation only
  n  prune both G and D (D fine-grained), naive fine-tuning, AGP

plus ``kd`` students (Aguinaldo et al.: MSE to the teacher) whose depth
scale gives about the pruned network's nonzero weights, and a noise floor:
the FID / domain-IS difference between the teacher and a second teacher
trained from another seed. Then Pix2Pix (edges2fashion) at
``--p2p_sparsities`` with ``--p2p_recipes``. Writes a markdown table
(FID/KID, domain IS, agreement with the teacher, params, MACs after
materialization, nonzero-weight MACs, latency) and a PNG of FID against
sparsity.

Run from the repository root:
  python -m experiments.prune_sweep                        # the full grid
  python -m experiments.prune_sweep --sparsities=50,75 --steps=300 \\
      --teacher_d=16 --teacher_steps=800 --p2p_steps=150   # miniature

Runs are kept under --workdir; a run with a results.json is not redone, so
an interrupted sweep resumes. Configs: --config (configs/dcgan_prune.py),
--teacher_config (configs/dcgan_teacher.py), --p2p_config
(configs/pix2pix_prune.py), --p2p_teacher_config (configs/pix2pix_gan.py),
each with ``:preset`` and ``--<flag>.*`` overrides.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time

from absl import flags, logging
from ml_collections import config_flags

from configs import fashion_kd
from gcjax import cli, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
_CFG = {n: config_flags.DEFINE_config_file(n, None, f'{n} config file.',
                                           lock_config=True)
        for n in ('config', 'teacher_config', 'p2p_config',
                  'p2p_teacher_config')}
flags.DEFINE_string('workdir', 'runs/prune_sweep', 'Root of the runs.')
flags.DEFINE_string('out', os.path.join(ROOT, 'experiments', 'results',
                                        'prune_sweep.md'),
                    'Markdown report (the PNG is written next to it).')
flags.DEFINE_integer('teacher_d', 32, 'DCGAN teacher depth scale.')
flags.DEFINE_integer('teacher_steps', 2000, 'DCGAN teacher steps.')
flags.DEFINE_bool('noise_floor', True, 'Train a second teacher (seed 1).')
flags.DEFINE_list('sparsities', ['25', '50', '75', '90'], 'Percent.')
flags.DEFINE_list('kinds', ['fine', 'filter'], 'prune.kind values.')
flags.DEFINE_list('recipes', ['b', 'd', 'g', 'h'], 'Appendix letters.')
flags.DEFINE_list('more_sparsities', [], 'Percent; run with --more_recipes '
                  'only (e.g. 25,90 for b,g).')
flags.DEFINE_list('more_recipes', ['b', 'g'], 'Letters at --more_sparsities.')
flags.DEFINE_bool('kd', True, 'kd students of matching size.')
flags.DEFINE_integer('steps', 1000, 'Fine-tuning steps of every DCGAN run.')
flags.DEFINE_integer('fid_limit', 512, 'Samples (and test images) for FID; '
                     '0: no FID (Inception on a CPU costs ~1 s an image).')
flags.DEFINE_integer('fid_real', 0, 'Real test images of the reference '
                     'statistics (cached, computed once); 0: as many as '
                     '--fid_limit.')
flags.DEFINE_integer('sample_limit', 2000, 'Samples for IS / agreement.')
flags.DEFINE_integer('p2p_ngf', 32, 'Pix2Pix teacher ngf.')
flags.DEFINE_integer('p2p_teacher_steps', 1500, 'Pix2Pix teacher steps.')
flags.DEFINE_list('p2p_sparsities', ['50', '75'], 'Percent; empty: none.')
flags.DEFINE_list('p2p_recipes', ['b', 'd', 'g', 'h'], 'Appendix letters.')
flags.DEFINE_integer('p2p_steps', 800, 'Fine-tuning steps of Pix2Pix runs.')
flags.DEFINE_bool('report_only', False, 'Train nothing: the report of the '
                  'runs that have finished (others are left out).')
flags.DEFINE_string('preface', '', 'Markdown file put at the top of the '
                    'report (the command and the verdict).')
flags.DEFINE_string('p2p_from', '', 'With --p2p_sparsities empty: copy the '
                    'Pix2Pix rows (and a note) from this earlier report '
                    'JSON instead of running them.')

LETTERS = {'b': ('self', 'agp'), 'c': ('scratch', 'oneshot'),
           'd': ('naive', 'oneshot'), 'e': ('naive', 'agp'),
           'g': ('distill', 'oneshot'), 'h': ('distill', 'agp'),
           'n': ('both', 'agp')}
COLORS = {'b': (214, 39, 40), 'c': (127, 127, 127), 'd': (31, 119, 180),
          'e': (23, 190, 207), 'g': (44, 160, 44), 'h': (148, 103, 189),
          'n': (140, 86, 75), 'kd': (255, 127, 14)}


def _run(config, workdir: str) -> dict | None:
  """The run's results (+ 'wall_s' of the call that made them); None
  under --report_only when it has not finished."""
  path = os.path.join(workdir, 'results.json')
  wall = os.path.join(workdir, 'sweep_wall_s.txt')
  if os.path.exists(path):
    logging.info('reusing %s', path)
  elif FLAGS.report_only:
    return None
  else:
    t0 = time.perf_counter()
    train.run(config, workdir)
    with open(wall, 'w') as f:
      f.write(f'{time.perf_counter() - t0:.1f}\n')
  with open(path) as f:
    res = json.load(f)
  if os.path.exists(wall):
    with open(wall) as f:
      res.setdefault('_run', {})['wall_s'] = float(f.read())
  return res


def _real_stats(data) -> str:
  """'stats:<path>' of the first --fid_real Fashion test images (computed
  and cached on first use), or 'img' (the trainer's own cache)."""
  if not FLAGS.fid_real:
    return 'img'
  from gcjax import data as data_lib
  from gcjax import stats
  from gcjax.metrics import fid
  path = stats.default_path(data, data.test_split, 'img', FLAGS.fid_real)
  if stats.cache_problem(path) == stats.MISSING:
    imgs = data_lib.load(data.name, data.test_split,
                         **data.args.to_dict())['img'][:FLAGS.fid_real]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fid.save_stats(path, stats.compute(imgs, reservoir=FLAGS.fid_real))
  return 'stats:' + path


def _dcgan_evals(c, pred) -> None:
  with c.unlocked():
    if not FLAGS.fid_limit:
      del c.evals['fid']
    else:
      c.evals.fid.target = _real_stats(c.data)
      c.evals.fid.limit = FLAGS.fid_limit
      c.evals.fid.kid_subset_size = min(c.evals.fid.kid_subset_size,
                                        FLAGS.fid_limit // 2)
      c.evals.fid.pred = pred
    c.evals['is'].limit = FLAGS.sample_limit
    c.evals['is'].pred = pred
    if 'image' in c.evals:
      c.evals.image.limit = FLAGS.sample_limit


def teachers_() -> tuple[str, list[dict]]:
  """Trains the DCGAN teacher(s); (export dir, [teacher rows])."""
  rows, export = [], ''
  for seed in ((0, 1) if FLAGS.noise_floor else (0,)):
    c = copy.deepcopy(_CFG['teacher_config'].value)
    c.generator.d = c.disc.d = FLAGS.teacher_d
    c.total_steps = FLAGS.teacher_steps
    c.seed = seed
    c.data.seed = seed
    _dcgan_evals(c, ())
    d = os.path.join(FLAGS.workdir, f'teacher_d{FLAGS.teacher_d}_s{seed}')
    res = _run(c, d)
    if res is None:
      continue
    rows.append({'name': f'teacher (seed {seed})', **res['generator'],
                 **_diagnostics(res)})
    export = export or os.path.join(d, 'export')
  return export, rows


def _prune_cfg(base, export, letter, kind, sp, steps):
  c = copy.deepcopy(base)
  c.teacher.init = f'run:{export}'
  c.prune.recipe, c.prune.schedule = LETTERS[letter]
  c.prune.kind = kind
  c.prune.sparsity = sp / 100
  c.total_steps = steps
  c.ckpt_every = steps
  return c


DIAG = {'dfrozen/student': 'D(student)', 'dfrozen/teacher': 'D(teacher)',
        's/adv': 'G adv loss', 's/distill': 'distill', 'd/real': 'D(real)',
        'd/fake': 'D(fake)', 'wall_s': 'wall s'}


def _diagnostics(res) -> dict:
  """The run's last logged losses worth a column (DIAG)."""
  run = res.get('_run', {})
  last = {**(run.get('last_losses') or {}), 'wall_s': run.get('wall_s')}
  return {k: float(last[k]) for k in DIAG if last.get(k) is not None}


def dcgan_rows(export: str) -> list[dict]:
  rows = []
  main = [int(s) for s in FLAGS.sparsities]
  more = [int(s) for s in FLAGS.more_sparsities if int(s) not in main]
  for sp in main + more:     # the full grid first
    letters = FLAGS.more_recipes if sp in more else FLAGS.recipes
    for kind in FLAGS.kinds:
      for letter in letters:
        if letter == 'c' and kind == 'fine':
          continue      # the from-scratch network is filter-sized
        c = _prune_cfg(_CFG['config'].value, export, letter, kind, sp,
                       FLAGS.steps)
        _dcgan_evals(c, ('student',))
        res = _run(c, os.path.join(FLAGS.workdir,
                                   f'dcgan_{kind}{sp}_{letter}'))
        if res is None:
          continue
        rows.append({'sparsity': sp, 'kind': kind, 'recipe': letter,
                     **res['student'], **_diagnostics(res)})
    if FLAGS.kd:
      # Aguinaldo et al.: a d' student with ~(1 - s) of the weights.
      d = max(1, round(FLAGS.teacher_d * math.sqrt(1 - sp / 100)))
      c = fashion_kd.get_config()
      c.teacher.init = f'run:{export}'
      c.student.d = d
      c.total_steps = c.ckpt_every = FLAGS.steps
      with c.unlocked():
        c.evals = {k: c.evals[k].to_dict() for k in ('fid', 'is', 'image',
                                                     'cost')}
      _dcgan_evals(c, ('student',))
      res = _run(c, os.path.join(FLAGS.workdir, f'kd{sp}_d{d}'))
      if res is None:
        continue
      rows.append({'sparsity': sp, 'kind': f'dense d={d}', 'recipe': 'kd',
                   **res['student'], **_diagnostics(res)})
  return rows


def p2p_rows() -> list[dict]:
  if not FLAGS.p2p_sparsities:
    if not FLAGS.p2p_from:
      return []
    with open(FLAGS.p2p_from) as f:
      old = json.load(f)
    return [{**r, 'copied': True} for r in old.get('pix2pix', [])]
  c = copy.deepcopy(_CFG['p2p_teacher_config'].value)
  c.generator.ngf = c.disc.ndf = FLAGS.p2p_ngf
  c.total_steps = FLAGS.p2p_teacher_steps
  c.optim.g.decay_start = c.optim.d.decay_start = c.total_steps // 2
  t_dir = os.path.join(FLAGS.workdir, f'p2p_teacher_ngf{FLAGS.p2p_ngf}')
  res = _run(c, t_dir)
  rows = [{'sparsity': 0, 'kind': 'teacher', 'recipe': '',
           **res['generator']}]
  for sp in (int(s) for s in FLAGS.p2p_sparsities):
    for kind in FLAGS.kinds:
      for letter in FLAGS.p2p_recipes:
        c = _prune_cfg(_CFG['p2p_config'].value, os.path.join(t_dir,
                                                              'export'),
                       letter, kind, sp, FLAGS.p2p_steps)
        c.teacher.ngf = FLAGS.p2p_ngf
        c.optim.s.decay_start = c.optim.d.decay_start = FLAGS.p2p_steps // 2
        res = _run(c, os.path.join(FLAGS.workdir,
                                   f'p2p_{kind}{sp}_{letter}'))
        rows.append({'sparsity': sp, 'kind': kind, 'recipe': letter,
                     **res['student']})
  return rows


def _fmt(v):
  if v is None:
    return ''
  if isinstance(v, float):
    return f'{v:.3g}' if abs(v) < 1e4 else f'{v:.4g}'
  return str(v)


def _table(rows, cols) -> list[str]:
  cols = [(k, h) for k, h in cols if any(k in r for r in rows)]
  out = ['| sparsity | kind | recipe | ' + ' | '.join(h for _, h in cols)
         + ' |', '|' + '---|' * (len(cols) + 3)]
  for r in rows:
    out.append(f"| {r.get('sparsity', '')} | {r.get('kind', r.get('name'))}"
               f" | {r.get('recipe', '')} | "
               + ' | '.join(_fmt(r.get(k)) for k, _ in cols) + ' |')
  return out


DC_COLS = [('fid', 'FID'), ('kid', 'KID'), ('domain_is', 'domain IS'),
           ('agree_psnr', 'PSNR vs T'), ('params', 'params'),
           ('macs_true', 'MACs (true)'),
           ('macs_nonzero', 'MACs (nonzero w.)'),
           ('latency_ms_b1', 'ms b1'), ('latency_ms_b64', 'ms b64')]
P2P_COLS = [('psnr', 'PSNR'), ('ssim', 'SSIM'), ('l1', 'L1'),
            ('agree_psnr', 'PSNR vs T'), ('params', 'params'),
            ('macs_true', 'MACs (true)'),
            ('macs_nonzero', 'MACs (nonzero w.)'),
            ('latency_ms_b1', 'ms b1'), ('latency_ms_b16', 'ms b16')]


def markdown(teachers: list[dict], rows: list[dict], p2p: list[dict],
             png: str) -> str:
  lines = ['# Self-supervised GAN compression (Yu & Pool) in miniature', '']
  if FLAGS.preface:
    with open(FLAGS.preface) as f:
      lines += [f.read().rstrip(), '']
  lines += [
           'Recipes (appendix letters): ' + ', '.join(
               f'{k} = {v[0]}/{v[1]}' for k, v in LETTERS.items()) + '; '
           'kd = Aguinaldo et al. MSE student of about the same weights.', '',
           f'DCGAN teacher d={FLAGS.teacher_d}, {FLAGS.teacher_steps} steps;'
           f' fine-tuning {FLAGS.steps} steps per run; '
           + (f'FID/KID (TF Inception pool3) of {FLAGS.fid_limit} samples '
              f'vs the cached statistics of the first '
              f'{FLAGS.fid_real or FLAGS.fid_limit} Fashion test images '
              '(FID at this N is biased upward: compare within the table '
              'only; KID is unbiased); '
              if FLAGS.fid_limit else 'no FID (--fid_limit=0); ')
           + f'domain IS and agreement with the teacher (same z) on '
           f'{FLAGS.sample_limit} samples.', '',
           '## DCGAN (Fashion-MNIST 32x32)', '']
  lines += _table([{'name': t['name'], **t} for t in teachers], DC_COLS)
  if len(teachers) == 2:
    diffs = [f'|d {k}| = {abs(teachers[0][k] - teachers[1][k]):.3g}'
             for k in ('fid', 'kid', 'domain_is')
             if k in teachers[0] and k in teachers[1]]
    lines += ['', 'Noise floor (two teachers, seeds 0 and 1): '
              + ', '.join(diffs) + '.']
  lines += [''] + _table(rows, DC_COLS)
  lines += ['', f'![quality vs sparsity]({os.path.basename(png)})', '']
  diag = [r for r in [*teachers, *rows] if any(k in r for k in DIAG)]
  if diag:
    lines += ['Diagnostics: mean of the last logged interval of each run '
              '(D(student) / D(teacher): the frozen teacher D\'s mean logit '
              'on the student\'s and the teacher\'s images of the same z; '
              'D(real) / D(fake): a training D\'s logits; wall s: the run\'s '
              'wall time incl. evaluation).', '']
    lines += _table(diag, list(DIAG.items())) + ['']
  if p2p:
    lines += ['## Pix2Pix (edges2fashion 32x32)', '']
    lines += ([f'Rows copied from an earlier sweep ({FLAGS.p2p_from}); '
               'see the note above for its settings.', '']
              if p2p[0].get('copied') else
              [f'Teacher ngf={FLAGS.p2p_ngf}, {FLAGS.p2p_teacher_steps} '
               f'steps; fine-tuning {FLAGS.p2p_steps} steps per run.', ''])
    lines += _table(p2p, P2P_COLS)
  return '\n'.join(lines) + '\n'


def _metric(rows) -> tuple[str, str]:
  """The plotted quality metric: FID when it was measured, else IS."""
  if any('fid' in r for r in rows):
    return 'fid', 'FID (lower is better)'
  return 'domain_is', 'domain IS (higher is better)'


def plot(rows: list[dict], teachers: list[dict], path: str) -> None:
  """Quality against sparsity: FID (when measured) above domain IS."""
  from PIL import Image
  panels = [_panel(rows, teachers, *_metric(rows))]
  if panels[0] is not None and _metric(rows)[0] != 'domain_is':
    panels.append(_panel(rows, teachers, 'domain_is',
                         'domain IS (higher is better)'))
  panels = [p for p in panels if p is not None]
  if not panels:
    return
  img = Image.new('RGB', (panels[0].width, sum(p.height for p in panels)),
                  'white')
  y = 0
  for p in panels:
    img.paste(p, (0, y))
    y += p.height
  img.save(path)


def _panel(rows, teachers, key: str, title: str):
  """One panel per kind, a line per recipe, of ``key`` against sparsity."""
  from PIL import Image, ImageDraw
  kinds = [k for k in FLAGS.kinds]
  w, h, m = 380, 300, 50
  img = Image.new('RGB', (w * len(kinds), h + 40), 'white')
  draw = ImageDraw.Draw(img)
  fids = [r[key] for r in rows if key in r] + [
      t[key] for t in teachers if key in t]
  if not fids or not rows:
    return None
  y0, y1 = min(fids), max(fids)
  y0, y1 = y0 - 0.05 * (y1 - y0 or 1), y1 + 0.05 * (y1 - y0 or 1)
  sps = sorted({r['sparsity'] for r in rows})
  x0, x1 = min(sps) - 5, max(sps) + 5
  for p, kind in enumerate(kinds):
    ox = p * w

    def px(x, y, ox=ox):
      return (ox + m + (x - x0) / (x1 - x0) * (w - 1.5 * m),
              h - m + 10 - (y - y0) / (y1 - y0) * (h - 1.5 * m))

    draw.rectangle([ox + m, m / 2 + 10, ox + w - m / 2, h - m + 10],
                   outline=(0, 0, 0))
    draw.text((ox + m, 4), f'{title}, {kind}', fill=(0, 0, 0))
    for t in range(4):
      yv = y0 + (y1 - y0) * t / 3
      draw.text((ox + 4, px(x0, yv)[1] - 5), f'{yv:.3g}', fill=(0, 0, 0))
    for s in sps:
      draw.text((px(s, y0)[0] - 8, h - m + 14), f'{s}%', fill=(0, 0, 0))
    for t in teachers[:1]:
      if key in t:
        a, b = px(x0, t[key]), px(x1, t[key])
        draw.line([a, b], fill=(90, 90, 90))
    for letter in [*FLAGS.recipes, 'kd']:
      pts = sorted((r['sparsity'], r[key]) for r in rows
                   if r['recipe'] == letter and key in r and (
                       r['kind'] == kind or letter == 'kd'))
      xy = [px(x, y) for x, y in pts]
      if len(xy) > 1:
        draw.line(xy, fill=COLORS[letter], width=2)
      for x, y in xy:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=COLORS[letter])
  for i, name in enumerate([*FLAGS.recipes, 'kd']):
    x = 10 + i * 60
    draw.rectangle([x, h + 18, x + 12, h + 30], fill=COLORS[name])
    draw.text((x + 16, h + 18), name, fill=(0, 0, 0))
  draw.text((w * len(kinds) - 160, h + 18), 'grey: teacher',
            fill=(0, 0, 0))
  return img


def main(argv) -> None:
  del argv
  bad = [x for x in FLAGS.recipes + FLAGS.p2p_recipes if x not in LETTERS]
  if bad:
    from gcjax import errors
    raise errors.UserError(f'--recipes/--p2p_recipes: unknown {bad}; known '
                           f'{sorted(LETTERS)}')
  export, teachers = teachers_()
  rows = dcgan_rows(export)
  p2p = p2p_rows()
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  png = os.path.splitext(FLAGS.out)[0] + '.png'
  plot(rows, teachers, png)
  with open(FLAGS.out, 'w') as f:
    f.write(markdown(teachers, rows, p2p, png))
  with open(os.path.splitext(FLAGS.out)[0] + '.json', 'w') as f:
    json.dump({'teachers': teachers, 'dcgan': rows, 'pix2pix': p2p}, f,
              indent=1, default=float)
  print(f'wrote {FLAGS.out} and {png}')


if __name__ == '__main__':
  cfg = os.path.join(ROOT, 'configs')
  cli.run(main, 'experiments.prune_sweep', defaults=[
      f'--config={cfg}/dcgan_prune.py',
      f'--teacher_config={cfg}/dcgan_teacher.py',
      f'--p2p_config={cfg}/pix2pix_prune.py',
      f'--p2p_teacher_config={cfg}/pix2pix_gan.py'])

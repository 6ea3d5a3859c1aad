"""The DLSGAN paper's figures in miniature: DLS vs No-DLS, encoder loss on
D vs on D+G (Cho & Krzyzak 2022, Figs. 3-10 and 17).

Trains one ``gan``/``stylegan`` run per variant (``dls_dg``: DLS with the
encoder loss on D and G, ``dls_d``: on D only, ``nodls_dg``, ``nodls_d``:
s = 1) from ``--config`` (default ``configs/stylegan_dls.py``) and writes
to ``--out`` (markdown) and PNGs next to it:

* curves over training: encoder loss (D's), latent entropy
  sum log(s sqrt(2 pi e)), PSNR/SSIM of real-image reconstructions
  G(E(x) s) and of generated-image reconstructions (from the runs'
  TensorBoard scalars; the evaluators run every ``evals.*.every_steps``);
* the final table: FID/KID of samples, encoder loss, entropy, PSNR/SSIM/
  LPIPS of reconstructions, wall time;
* a reconstruction grid of real test images per variant;
* an interpolation strip along the latent element with the largest s
  (No-DLS: the largest encoder-predicted variance), swept from -2 to 2.

Run from the repository root:
  python -m experiments.dls_report                         # all 4 variants
  python -m experiments.dls_report --variants=dls_dg,nodls_dg \\
      --config.total_steps=1500 --workdir=runs/dls_report

A variant whose workdir already holds results.json is not retrained (an
interrupted report resumes); the wall time of a run this script trains is
kept in ``<workdir>/wall.json``.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import struct
import time

import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from gcjax import cli, teachers, train
from gcjax import data as data_lib
from gcjax.data import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'A gan/stylegan config file, optionally with :preset '
    '(default configs/stylegan_dls.py).', lock_config=True)
flags.DEFINE_list('variants', ['dls_dg', 'nodls_dg', 'dls_d', 'nodls_d'],
                  'Runs: {dls,nodls}_{dg,d}.')
flags.DEFINE_string('workdir', 'runs/dls_report', 'Root of the runs.')
flags.DEFINE_string('out', os.path.join(ROOT, 'experiments', 'results',
                                        'dls_report.md'),
                    'Markdown report (PNGs are written next to it).')
flags.DEFINE_integer('grid_rows', 8, 'Test images in the reconstruction '
                     'grid.')

CURVES = (('d/enc', 'encoder loss L_enc (D step)'),
          ('dls/entropy', 'latent entropy (nats)'),
          ('eval/recon/psnr', 'real recon PSNR (dB)'),
          ('eval/recon/ssim', 'real recon SSIM'),
          ('eval/gen_recon/agree_psnr', 'generated recon PSNR (dB)'),
          ('eval/gen_recon/agree_ssim', 'generated recon SSIM'))
COLORS = {'dls_dg': (214, 39, 40), 'dls_d': (255, 127, 14),
          'nodls_dg': (31, 119, 180), 'nodls_d': (44, 160, 44)}


def variant_config(base, name: str):
  """``base`` with DLS on/off and the encoder loss on D or D+G."""
  kind, _, enc_on = name.partition('_')
  if kind not in ('dls', 'nodls') or enc_on not in ('d', 'dg'):
    raise ValueError(f'variant {name!r}: expected {{dls,nodls}}_{{d,dg}}')
  c = copy.deepcopy(base)
  c.dls.enabled = kind == 'dls'
  c.dls.enc_on = enc_on
  return c


def scalars(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """Every TensorBoard scalar of a run: tag -> [(step, value)] (reads the
  TFRecord framing; the last value of a step wins, as after a resume)."""
  from tensorboardX.proto import event_pb2
  out: dict[str, dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.*'))):
    with open(path, 'rb') as f:
      data = f.read()
    pos = 0
    while pos + 12 <= len(data):
      (n,) = struct.unpack('<Q', data[pos:pos + 8])
      ev = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
      pos += 12 + n + 4
      for v in ev.summary.value:
        out.setdefault(v.tag, {})[int(ev.step)] = float(v.simple_value)
  return {k: sorted(v.items()) for k, v in out.items()}


def _train(config, workdir: str) -> dict:
  path = os.path.join(workdir, 'results.json')
  if not os.path.exists(path):
    t = time.time()
    train.run(config, workdir)
    with open(os.path.join(workdir, 'wall.json'), 'w') as f:
      json.dump({'wall_s': time.time() - t}, f)
  with open(path) as f:
    return json.load(f)


def _test_images(config, n: int) -> np.ndarray:
  d = config.data
  arrays = data_lib.load(d.name, d.test_split, **d.args.to_dict())
  return pipeline.to_float(arrays['img'][:n])


def _pixels(x: np.ndarray, scale: int = 3) -> np.ndarray:
  """[N, H, W, C] in [-1, 1] -> uint8 [N, sH, sW, 3]."""
  x = np.clip((np.asarray(x) + 1) * 127.5, 0, 255).astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, -1)
  return np.repeat(np.repeat(x, scale, 1), scale, 2)


def _tile(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
  """Rows of images [N, H, W, 3] -> one uint8 picture."""
  n, h, w = rows[0].shape[:3]
  out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255,
                np.uint8)
  for i, row in enumerate(rows):
    for j in range(n):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      out[y:y + h, x:x + w] = row[j]
  return out


def pictures(runs: dict[str, str], images: np.ndarray):
  """(reconstruction grid, interpolation strip, the swept element per run).

  Grid: row 0 the test images, then one row of G(E(x) s) per run. Strip:
  per run, 3 rows (z = E(x) of 3 test images) sweeping the latent element
  with the largest s (No-DLS: largest mean E(x)^2) over -2..2 in 9 steps.
  """
  rows, strip, swept = [_pixels(images)], [], {}
  for name, wd in runs.items():
    gen, g_vars = teachers.load(f'run:{wd}:generator')
    disc, d_vars = teachers.load(f'run:{wd}:disc')
    z = disc.apply(d_vars, jnp.asarray(images))[1]['latent']
    rows.append(_pixels(gen.apply(g_vars, z)[0]))
    s = np.asarray(g_vars['dls']['scale'])
    k = int(np.argmax(s if np.ptp(s) > 0 else
                      np.mean(np.square(np.asarray(z)), 0)))
    swept[name] = (k, float(s[k]))
    for i in range(3):
      zz = jnp.repeat(z[i:i + 1], 9, 0).at[:, k].set(jnp.linspace(-2, 2, 9))
      strip.append(_pixels(gen.apply(g_vars, zz)[0]))
  return _tile(rows), _tile(strip), swept


def _line_panel(draw, box, title, series, colors):
  """One line chart of {name: [(step, value)]} inside ``box``."""
  x0, y0, x1, y1 = box
  pts = [p for s in series.values() for p in s]
  draw.text((x0 + 4, y0 + 2), title, fill=(0, 0, 0))
  if not pts:
    return
  sx = [p[0] for p in pts]
  sy = [p[1] for p in pts]
  lo_x, hi_x, lo_y, hi_y = min(sx), max(sx), min(sy), max(sy)
  if hi_y - lo_y < 1e-9:
    lo_y, hi_y = lo_y - 1, hi_y + 1
  px0, py0, px1, py1 = x0 + 50, y0 + 18, x1 - 8, y1 - 18
  draw.rectangle([px0, py0, px1, py1], outline=(160, 160, 160))
  draw.text((x0 + 2, py0), f'{hi_y:.3g}', fill=(0, 0, 0))
  draw.text((x0 + 2, py1 - 10), f'{lo_y:.3g}', fill=(0, 0, 0))
  draw.text((px1 - 40, py1 + 3), f'{hi_x}', fill=(0, 0, 0))

  def to_px(x, y):
    return (px0 + (x - lo_x) / max(hi_x - lo_x, 1) * (px1 - px0),
            py1 - (y - lo_y) / (hi_y - lo_y) * (py1 - py0))

  for name, s in series.items():
    line = [to_px(x, y) for x, y in s]
    if len(line) > 1:
      draw.line(line, fill=colors[name], width=2)
    for x, y in line if len(line) < 20 else ():
      draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colors[name])


def plot_curves(curves: dict[str, dict], path: str) -> None:
  from PIL import Image, ImageDraw
  w, h, cols = 330, 220, 3
  n_rows = -(-len(CURVES) // cols)
  img = Image.new('RGB', (w * cols, h * n_rows + 24), 'white')
  draw = ImageDraw.Draw(img)
  for i, (tag, title) in enumerate(CURVES):
    r, c = divmod(i, cols)
    _line_panel(draw, (c * w, r * h, (c + 1) * w, (r + 1) * h), title,
                {n: cv.get(tag, []) for n, cv in curves.items()}, COLORS)
  for i, name in enumerate(curves):
    x = 10 + i * 120
    draw.rectangle([x, h * n_rows + 6, x + 14, h * n_rows + 18],
                   fill=COLORS[name])
    draw.text((x + 20, h * n_rows + 6), name, fill=(0, 0, 0))
  img.save(path)


def _fmt(v, nd=3):
  return '' if v is None else (f'{v:.{nd}f}' if isinstance(v, float)
                                else str(v))


def markdown(results, curves, walls, swept, files, steps) -> str:
  cols = (('FID', 'generator', 'fid'), ('KID', 'generator', 'kid'),
          ('L_enc (D)', None, 'd/enc'),
          ('entropy', None, 'dls/entropy'),
          ('real PSNR', 'recon', 'psnr'), ('real SSIM', 'recon', 'ssim'),
          ('real LPIPS', 'recon', 'lpips'),
          ('gen PSNR', 'gen_recon', 'agree_psnr'),
          ('gen SSIM', 'gen_recon', 'agree_ssim'))
  lines = ['# DLSGAN in miniature: DLS vs No-DLS', '',
           f'Fashion-MNIST 32x32, {steps} steps per run, batch 16 '
           '(`configs/stylegan_dls.py` with the overrides on the command '
           'line). Variants: `dls`/`nodls` (s = 1), encoder loss on D '
           '(`_d`) or on D and G (`_dg`). Real reconstructions: '
           'G(E(x) s) of test images; generated: G(E(G(z s)) s) against '
           'G(z s).', '',
           '| run | ' + ' | '.join(c[0] for c in cols) + ' | wall |',
           '|---' * (len(cols) + 2) + '|']
  for name, res in results.items():
    cells = []
    for _, model, key in cols:
      if model is None:   # the last logged value (a resumed run's
        pts = curves[name].get(key)   # last_losses may be empty)
        v = pts[-1][1] if pts else None
      else:
        v = res.get(model, {}).get(key)
      cells.append(_fmt(v))
    wall = walls.get(name)
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' | '
                 + (f'{wall / 60:.1f} min' if wall else '') + ' |')
  lines += ['', '## Curves over training', '',
            f'![curves]({os.path.basename(files["curves"])})', '',
            '| run | ' + ' | '.join(t for t, _ in CURVES[:1] + CURVES[2:3])
            + ' |', '|---|---|---|']
  for name, cv in curves.items():
    cells = []
    for tag, _ in CURVES[:1] + CURVES[2:3]:
      pts = cv.get(tag, [])
      cells.append(', '.join(f'{s}: {v:.3g}' for s, v in pts[::max(
          1, len(pts) // 8)]))
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  lines += ['', '## Reconstructions of real test images', '',
            'Top row: test images; then one row per run: '
            + ', '.join(results) + '.', '',
            f'![recon]({os.path.basename(files["recon"])})', '',
            '## Interpolation along the most important latent element', '',
            'Per run 3 rows (z = E(x) of the first 3 test images), element '
            'swept over -2..2: ' + ', '.join(
                f'{n}: element {k} (s = {s:.3f})'
                for n, (k, s) in swept.items()) + '.', '',
            f'![interp]({os.path.basename(files["interp"])})', '']
  return '\n'.join(lines)


def main(argv) -> None:
  del argv
  from PIL import Image
  base = _CONFIG.value
  results, curves, walls, runs = {}, {}, {}, {}
  for name in FLAGS.variants:
    wd = os.path.join(FLAGS.workdir, name)
    results[name] = _train(variant_config(base, name), wd)
    curves[name] = scalars(wd)
    wall_path = os.path.join(wd, 'wall.json')
    if os.path.exists(wall_path):
      with open(wall_path) as f:
        walls[name] = json.load(f)['wall_s']
    runs[name] = wd
  stem = os.path.splitext(FLAGS.out)[0]
  files = {k: f'{stem}_{k}.png' for k in ('curves', 'recon', 'interp')}
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  plot_curves(curves, files['curves'])
  grid, strip, swept = pictures(runs, _test_images(base, FLAGS.grid_rows))
  Image.fromarray(grid).save(files['recon'])
  Image.fromarray(strip).save(files['interp'])
  md = markdown(results, curves, walls, swept, files, base.total_steps)
  with open(FLAGS.out, 'w') as f:
    f.write(md)
  with open(stem + '.json', 'w') as f:
    json.dump({'results': results, 'curves': curves, 'wall_s': walls},
              f, indent=1, default=float)
  print(md)


if __name__ == '__main__':
  cli.run(main, 'experiments.dls_report', defaults=[
      f'--config={os.path.join(ROOT, "configs", "stylegan_dls.py")}'])

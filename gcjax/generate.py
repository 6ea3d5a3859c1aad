"""``python -m gcjax.generate``: run a student on a folder of images.

    python -m gcjax.generate --model=DEPLOY_FOLDER_OR_ONNX --input=IN --output=OUT
    python -m gcjax.generate --model=DEPLOY_FOLDER --num=16 --output=OUT
    python -m gcjax.generate --model=RUN_DIR --input=IN --output=OUT   # JAX

``--model`` is a deploy folder written by ``python -m gcjax.export`` (or
an ``.onnx`` file in one): the model runs under onnxruntime, and this
command needs only onnxruntime, numpy and Pillow (no JAX). A run
directory (one with ``export/card.json``) runs the network under JAX.

Image-to-image networks read every image in ``--input`` (sorted), resize
it to the network's input size, run it in batches of ``--batch`` and write
``<output>/<name>.png``; an image that cannot be read is reported by name
and skipped, the others are still written. Unconditional networks (a latent
input) write ``--num`` samples drawn with ``--seed``. Bad input is one line
``gcjax.generate: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image

from gcjax import deployed, errors

PROG = 'gcjax.generate'
IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif',
              '.tiff', '.ppm')


class Runner:
  """A network behind ``__call__(x [B, ...]) -> [B, H, W, C] in [-1, 1]``."""

  def __init__(self, fn, input_shape, fixed_batch, kind):
    self.fn = fn
    self.input_shape = tuple(input_shape)
    self.fixed_batch = fixed_batch
    self.kind = kind

  def __call__(self, x: np.ndarray) -> np.ndarray:
    b = self.fixed_batch
    if not b or len(x) == b:
      return self.fn(x)
    outs = []
    for i in range(0, len(x), b):
      chunk = x[i:i + b]
      pad = np.repeat(chunk[-1:], b - len(chunk), axis=0)
      outs.append(self.fn(np.concatenate([chunk, pad]))[:len(chunk)])
    return np.concatenate(outs)


def onnx_runner(model: str, net: str, threads: int) -> Runner:
  """A digest-checked ONNX export under onnxruntime."""
  sess, entry = deployed.onnx_session(model, net, threads)
  inp = entry['input']
  batch = inp['shape'][0]
  fixed = batch if isinstance(batch, int) else None
  fn = lambda x: sess.run(None, {inp['name']: x.astype(inp['dtype'])})[0]
  return Runner(fn, inp['shape'][1:], fixed, inp['kind'])


def jax_runner(run_dir: str, net: str) -> Runner:
  """The exported network of a gcjax run, under JAX."""
  import jax

  from gcjax import teachers
  rest = run_dir + (f':{net}' if net else '')
  _, _, entry = teachers.find_run_network(rest, f'--model={run_dir}')
  module, variables = teachers.load(f'run:{rest}')
  apply = jax.jit(lambda x: module.apply(variables, x, train=False)[0])
  shape = tuple(entry['input_shape'])
  return Runner(lambda x: np.asarray(apply(x)), shape, None,
                'image' if len(shape) == 3 else 'latent')


def load_runner(model: str, net: str = '', threads: int = 0) -> Runner:
  """An ONNX runner for a deploy folder / .onnx file, JAX for a run dir."""
  if os.path.isfile(model) or os.path.isfile(
      os.path.join(model, deployed.CARD)):
    return onnx_runner(model, net, threads)
  if os.path.isdir(os.path.join(model, 'export')) or os.path.isdir(model):
    return jax_runner(model, net)
  raise errors.UserError(f'--model={model}: no such file or folder')


def to_uint8(y: np.ndarray) -> np.ndarray:
  """[-1, 1] floats -> uint8 pixels."""
  return np.clip(np.rint((y + 1.0) * 127.5), 0, 255).astype(np.uint8)


def read_image(path: str, shape) -> np.ndarray:
  """The image at ``path`` as [H, W, C] floats in [-1, 1], resized."""
  h, w, c = shape
  with Image.open(path) as im:
    im = im.convert('L' if c == 1 else 'RGB')
    im = im.resize((w, h), Image.BILINEAR)
    a = np.asarray(im, np.float32)
  a = a[..., None] if a.ndim == 2 else a
  return a / 127.5 - 1.0


def save_image(path: str, y: np.ndarray) -> None:
  a = to_uint8(y)
  Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path)


class Progress:
  """A one-line progress bar on stderr (no dependencies)."""

  def __init__(self, total: int, stream=sys.stderr, width: int = 30):
    self.total, self.done, self.stream, self.width = total, 0, stream, width

  def update(self, n: int) -> None:
    self.done += n
    filled = self.width * self.done // max(1, self.total)
    self.stream.write(f'\r{PROG} [{"#" * filled}{"." * (self.width - filled)}]'
                      f' {self.done}/{self.total}')
    if self.done >= self.total:
      self.stream.write('\n')
    self.stream.flush()


def translate(runner: Runner, src: str, dst: str, batch: int) -> tuple:
  """Runs ``runner`` on every image in ``src``; ``(written, skipped)``."""
  if not os.path.isdir(src):
    raise errors.UserError(f'--input={src}: no such folder')
  names = sorted(n for n in os.listdir(src)
                 if n.lower().endswith(IMAGE_EXTS)
                 and os.path.isfile(os.path.join(src, n)))
  if not names:
    raise errors.UserError(f'--input={src}: no images ({", ".join(IMAGE_EXTS)})')
  os.makedirs(dst, exist_ok=True)
  written, skipped = [], []
  bar = Progress(len(names))
  for i in range(0, len(names), batch):
    xs, ok = [], []
    for n in names[i:i + batch]:
      try:
        xs.append(read_image(os.path.join(src, n), runner.input_shape))
        ok.append(n)
      except Exception as e:  # noqa: BLE001 - any unreadable file is skipped.
        skipped.append(n)
        print(f'\n{PROG}: skipped {n}: cannot read it as an image '
              f'({type(e).__name__}: {e})', file=sys.stderr)
    if xs:
      ys = runner(np.stack(xs))
      for n, y in zip(ok, ys):
        out = os.path.join(dst, os.path.splitext(n)[0] + '.png')
        save_image(out, y)
        written.append(out)
    bar.update(len(names[i:i + batch]))
  return written, skipped


def sample(runner: Runner, num: int, dst: str, batch: int, seed: int):
  """Writes ``num`` samples of an unconditional network; their paths."""
  rng = np.random.default_rng(seed)
  os.makedirs(dst, exist_ok=True)
  written, bar = [], Progress(num)
  for i in range(0, num, batch):
    n = min(batch, num - i)
    z = rng.standard_normal((n, *runner.input_shape)).astype(np.float32)
    for j, y in enumerate(runner(z)):
      out = os.path.join(dst, f'sample_{i + j:05d}.png')
      save_image(out, y)
      written.append(out)
    bar.update(n)
  return written


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n')[0])
  p.add_argument('--model', required=True,
                 help='deploy folder, .onnx file in one, or a run directory')
  p.add_argument('--net', default='', help='network name (default: student)')
  p.add_argument('--input', default='', help='folder of input images')
  p.add_argument('--output', required=True, help='folder for the results')
  p.add_argument('--num', type=int, default=0,
                 help='samples to draw (unconditional networks)')
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--threads', type=int, default=0,
                 help='onnxruntime intra-op threads (0: its default)')
  args = p.parse_args(argv)
  from gcjax import hostmem
  hostmem.keep_freed_memory()
  try:
    if args.batch < 1:
      raise errors.UserError(f'--batch={args.batch}: expected >= 1')
    runner = load_runner(args.model, args.net, args.threads)
    if runner.kind == 'image':
      if not args.input:
        raise errors.UserError('the network translates images: give --input')
      written, skipped = translate(runner, args.input, args.output,
                                   args.batch)
      print(f'{PROG}: wrote {len(written)} images to {args.output}'
            + (f'; skipped {len(skipped)}: {", ".join(skipped)}'
               if skipped else ''))
    else:
      if args.num < 1:
        raise errors.UserError('the network is unconditional: give --num=N')
      written = sample(runner, args.num, args.output, args.batch, args.seed)
      print(f'{PROG}: wrote {len(written)} samples to {args.output}')
  except errors.USER_ERRORS as e:
    print(f'{PROG}: error: {" ".join(str(e).split())}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())

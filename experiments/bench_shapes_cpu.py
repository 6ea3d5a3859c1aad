"""Micro-benchmarks: layer shapes XLA:CPU may run slowly, in two forms each.

For each case, a plain form and a candidate reformulation of the same
function are jitted, checked equal (max abs difference of the values and
of the gradient of sum(sin(y)) w.r.t. input and weights), and timed in one
process, alternating calls, forward and forward+backward, at batch 1 and 4:

* ``valid3x3`` / ``valid7x7_in`` / ``valid7x7_out``: a VALID conv on a
  reflect-padded input (ResNet blocks, the 7x7 stem and head) vs the conv
  with zero padding k // 2 and a crop (``layers.conv_valid``, adopted);
* ``down4x4``: the U-Net's 4x4 stride-2 pad-1 conv vs space-to-depth + a
  2x2 stride-1 conv on 4x the channels;
* ``up4x4``: the U-Net's 4x4 stride-2 transposed conv as XLA's lhs-dilated
  conv vs gcjax's sub-pixel form (``layers.subpixel_conv_transpose``);
* ``inorm``: two-pass instance norm (mean, then mean of squared deviations;
  gcjax's) vs one-pass (E[x^2] - E[x]^2);
* ``skipcat``: a transposed conv of the U-Net skip concatenation [s, h] vs
  the sum of two transposed convs over s and h with the kernel split.

  nice -n 10 python -m experiments.bench_shapes_cpu [--reps=5] [--cases=...]

Writes experiments/results/bench_shapes_cpu.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gcjax.models import layers

HERE = os.path.dirname(os.path.abspath(__file__))
DN = ('NHWC', 'HWIO', 'NHWC')


def _conv(x, w, stride=1, pad=0):
  return jax.lax.conv_general_dilated(x, w, (stride, stride),
                                      ((pad, pad), (pad, pad)),
                                      dimension_numbers=DN)


def _valid_pair(k):
  p = k // 2

  def plain(x, w):
    return _conv(layers.gcjax_reflect_pad(x, p), w)

  def padded(x, w):
    y = _conv(layers.gcjax_reflect_pad(x, p), w, pad=p)
    return y[:, p:-p, p:-p]
  return plain, padded


def _s2d(x, w):
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  b, h, wd, c = x.shape
  x = x.reshape(b, h // 2, 2, wd // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(b, h // 2, wd // 2, 4 * c)
  o = w.shape[-1]
  k = w.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
  return _conv(x, k.reshape(2, 2, 4 * c, o))


def _dilated(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), ((2, 2), (2, 2)),
                                      lhs_dilation=(2, 2),
                                      dimension_numbers=DN)


def _inorm_two(x, w):
  return layers.gcjax_instance_norm(x, 1e-5) * w


def _inorm_one(x, w):
  m = jnp.mean(x, axis=(1, 2), keepdims=True)
  m2 = jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True)
  return (x - m) * jax.lax.rsqrt(m2 - jnp.square(m) + 1e-5) * w


def _cat(x, w):
  c = x.shape[-1] // 2
  # The decoder's input: the concatenation of a skip and a decoder map
  # (built here from two halves so that the copy is part of the program).
  cat = jnp.concatenate([jnp.tanh(x[..., :c]), jnp.tanh(x[..., c:])], -1)
  return layers.subpixel_conv_transpose(cat, w, 2, 2, 2)


def _split(x, w):
  c = x.shape[-1] // 2
  return (layers.subpixel_conv_transpose(jnp.tanh(x[..., :c]), w[:, :, :c],
                                         2, 2, 2)
          + layers.subpixel_conv_transpose(jnp.tanh(x[..., c:]), w[:, :, c:],
                                           2, 2, 2))


# name -> (plain, candidate, x shape without batch, w shape)
CASES = {
    'valid3x3': (*_valid_pair(3), (64, 64, 256), (3, 3, 256, 256)),
    'valid7x7_in': (*_valid_pair(7), (256, 256, 3), (7, 7, 3, 64)),
    'valid7x7_out': (*_valid_pair(7), (256, 256, 64), (7, 7, 64, 3)),
    'down4x4': (lambda x, w: _conv(x, w, 2, 1), _s2d, (128, 128, 64),
                (4, 4, 64, 128)),
    'up4x4': (_dilated, lambda x, w: layers.subpixel_conv_transpose(
        x, w, 2, 2, 2), (64, 64, 128), (4, 4, 128, 64)),
    'inorm': (_inorm_two, _inorm_one, (64, 64, 256), (256,)),
    'skipcat': (_cat, _split, (64, 64, 256), (4, 4, 256, 64)),
}


def _time(f, args, reps):
  out = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    out.append(time.perf_counter() - t0)
  return out


def run_case(name, batch, reps):
  plain, cand, xs, ws = CASES[name]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, *xs)), jnp.float32)
  w = jnp.asarray(0.05 * rng.standard_normal(ws), jnp.float32)
  row = {'case': name, 'batch': batch}
  for mode in ('fwd', 'fwd+bwd'):
    if mode == 'fwd':
      fa, fb = jax.jit(plain), jax.jit(cand)
    else:
      fa, fb = (jax.jit(jax.grad(lambda x, w, f=f: jnp.sum(jnp.sin(f(x, w))),
                                 argnums=(0, 1))) for f in (plain, cand))
    ya, yb = fa(x, w), fb(x, w)
    row[f'{mode}_diff'] = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                              zip(jax.tree.leaves(ya), jax.tree.leaves(yb)))
    ta, tb = [], []
    for _ in range(reps):   # alternate
      ta += _time(fa, (x, w), 1)
      tb += _time(fb, (x, w), 1)
    row[f'{mode}_plain'] = 1e3 * float(np.median(ta))
    row[f'{mode}_cand'] = 1e3 * float(np.median(tb))
  print(row, file=sys.stderr, flush=True)
  return row


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--cases', default=','.join(CASES))
  ap.add_argument('--batches', default='1,4')
  ap.add_argument('--reps', type=int, default=5)
  ap.add_argument('--out', default=os.path.join(HERE, 'results',
                                                'bench_shapes_cpu.md'))
  args = ap.parse_args(argv)
  load = os.getloadavg()
  rows = [run_case(c, int(b), args.reps) for c in args.cases.split(',')
          for b in args.batches.split(',')]
  lines = [
      '# XLA:CPU layer shapes: plain form vs candidate', '',
      f'jax {jax.__version__}, {os.cpu_count()} cores, median of '
      f'{args.reps} alternating calls; load average before {load[0]:.1f}, '
      f'after {os.getloadavg()[0]:.1f}. ms plain / candidate (ratio '
      'candidate / plain); diff: max abs difference of values (fwd) and of '
      'the input and weight gradients (fwd+bwd).', '',
      '| case | batch | fwd ms | fwd+bwd ms | fwd diff | grad diff |',
      '|---|---|---|---|---|---|']
  for r in rows:
    lines.append(
        f'| {r["case"]} | {r["batch"]} | {r["fwd_plain"]:.1f} / '
        f'{r["fwd_cand"]:.1f} ({r["fwd_cand"] / r["fwd_plain"]:.2f}) | '
        f'{r["fwd+bwd_plain"]:.1f} / {r["fwd+bwd_cand"]:.1f} '
        f'({r["fwd+bwd_cand"] / r["fwd+bwd_plain"]:.2f}) | '
        f'{r["fwd_diff"]:.1e} | {r["fwd+bwd_diff"]:.1e} |')
  with open(args.out, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))
  return rows


if __name__ == '__main__':
  main()

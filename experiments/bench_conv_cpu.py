"""XLA:CPU convolution throughput: what each knob gives on the U-Net forward.

The VEM issue's target is a teacher forward (Pix2Pix U-Net ngf 64, 256x256,
batch 1) at >= 80% of this CPU's f32 matmul rate. This script measures, for
each variant, in a fresh subprocess (XLA flags are read once per process):

* the matmul rate (4096^2 ``jnp.dot``) under the same flags,
* true GMAC/s of the ngf 64 and ngf 16 U-Net forwards (true MACs from
  ``gcjax.metrics.cost``), and the student speedup vs the true-MAC ratio.

Variants are XLA CPU flags (oneDNN, XNNPACK, fast math, Eigen threading) and
model formulations (``transposed``: sub-pixel, the default, or XLA's
lhs-dilated conv; ``down``: the 4x4 stride-2 convs as they are, or as
space-to-depth + a 2x2 stride-1 conv on 4x the channels).

  python -m experiments.bench_conv_cpu [--variants=base,onednn,...]
      [--res=256] [--iters=5]

Writes experiments/results/bench_conv_cpu.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name -> (XLA_FLAGS additions, formulation options)
VARIANTS = {
    'base': ('', {}),
    'dilated_transpose': ('', {'transposed': 'dilated'}),
    's2d_down': ('', {'down': 's2d'}),
    'onednn': ('--xla_cpu_use_onednn=true', {}),
    'onednn_custom_call': ('--xla_cpu_use_onednn=true '
                           '--xla_cpu_experimental_onednn_custom_call=true',
                           {}),
    'xnnpack': ('--xla_cpu_use_xnnpack=true', {}),
    'fast_math': ('--xla_cpu_enable_fast_math=true', {}),
    'single_thread_eigen': ('--xla_cpu_multi_thread_eigen=false', {}),
}


def _s2d_interceptor(next_fun, args, kwargs, context):
  """Runs 4x4 stride-2 pad-1 ``nn.Conv`` calls as space-to-depth + 2x2.

  Same parameters and numbers (up to rounding): padded input pixel 2i + kh
  with kh = 2a + p is block i + a, phase p of the space-to-depth input, so
  the kernel regroups to [2, 2, 4C, O].
  """
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  m = context.module
  if not (isinstance(m, nn.Conv) and context.method_name == '__call__'
          and tuple(m.kernel_size) == (4, 4) and tuple(m.strides) == (2, 2)
          and m.feature_group_count == 1):
    return next_fun(*args, **kwargs)
  x = jnp.pad(args[0], ((0, 0), (1, 1), (1, 1), (0, 0)))
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(b, h // 2, w // 2, 4 * c)
  k = m.variables['params']['kernel']
  o = k.shape[-1]
  k = k.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
  y = jax.lax.conv_general_dilated(
      x, k.reshape(2, 2, 4 * c, o), (1, 1), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  if m.use_bias:
    y = y + m.variables['params']['bias']
  return y


def child(opts: dict, res: int, iters: int) -> dict:
  """Runs in the subprocess: measures one variant, returns a dict."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from gcjax.metrics import cost
  from gcjax.models import layers, unet

  rate = cost.matmul_rate(n_iters=iters)
  out = {'matmul_gmacs': rate / 1e9}
  for ngf in (64, 16):
    m = unet.UNetGenerator(ngf=ngf, out_ch=3)
    x = jax.random.uniform(jax.random.key(1), (1, res, res, 3), minval=-1.)
    v = m.init({'params': jax.random.key(0), 'dropout': jax.random.key(0)},
               x)
    fwd = lambda v, x, m=m: m.apply(v, x)[0]  # noqa: E731
    macs = cost.count_macs(fwd, v, x)['true']
    if opts.get('down') == 's2d':
      ref = jax.jit(fwd)(v, x)

      def fwd(v, x, m=m):  # noqa: F811
        with nn.intercept_methods(_s2d_interceptor):
          return m.apply(v, x)[0]
      err = float(jnp.max(jnp.abs(jax.jit(fwd)(v, x) - ref)))
      if err > 1e-4:
        raise AssertionError(f's2d formulation differs by {err}')
    # The first call traces and compiles; the dilated variant is traced
    # inside the context and its cached trace is what the timed calls run.
    f = jax.jit(fwd)
    with (layers.dilated_transposed_convs()
          if opts.get('transposed') == 'dilated' else contextlib.nullcontext()):
      t0 = time.perf_counter()
      jax.block_until_ready(f(v, x))
    compile_s = time.perf_counter() - t0
    t = cost.measure_latency(f, (v, x), n_warmup=0,
                             n_iters=iters)['median_s']
    out[f'ngf{ngf}'] = {'gmacs': macs / 1e9, 'ms': 1e3 * t,
                        'gmac_per_s': macs / t / 1e9,
                        'compile_s': compile_s}
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--variants', default=','.join(VARIANTS))
  p.add_argument('--res', type=int, default=256)
  p.add_argument('--iters', type=int, default=5)
  p.add_argument('--child', default='')
  p.add_argument('--out', default=os.path.join(HERE, 'results',
                                               'bench_conv_cpu.md'))
  args = p.parse_args()
  if args.child:
    print('RESULT ' + json.dumps(child(json.loads(args.child), args.res,
                                       args.iters)), flush=True)
    return
  rows = []
  for name in args.variants.split(','):
    if name not in VARIANTS:
      raise SystemExit(f'unknown variant {name!r}; known: {list(VARIANTS)}')
    flags, opts = VARIANTS[name]
    env = dict(os.environ)
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + flags).strip()
    env.pop('JAX_COMPILATION_CACHE_DIR', None)
    proc = subprocess.run(
        [sys.executable, '-m', 'experiments.bench_conv_cpu',
         f'--child={json.dumps(opts)}', f'--res={args.res}',
         f'--iters={args.iters}'],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    line = [ln for ln in proc.stdout.splitlines()
            if ln.startswith('RESULT ')]
    if proc.returncode or not line:
      err = (proc.stderr.strip().splitlines() or ['no output'])[-1]
      rows.append(f'| {name} | `{flags or "-"}` | failed: {err[:120]} |'
                  ' | | | |')
      print(rows[-1], flush=True)
      continue
    r = json.loads(line[0][len('RESULT '):])
    t, s = r['ngf64'], r['ngf16']
    speed = t['ms'] / s['ms']
    ratio = t['gmacs'] / s['gmacs']
    rows.append(
        f'| {name} | `{flags or "-"}` | {r["matmul_gmacs"]:.1f} | '
        f'{t["ms"]:.1f} ms, {t["gmac_per_s"]:.1f} GMAC/s '
        f'({100 * t["gmac_per_s"] / r["matmul_gmacs"]:.0f}%) | '
        f'{s["ms"]:.1f} ms, {s["gmac_per_s"]:.1f} GMAC/s | '
        f'{speed:.2f}x ({speed / ratio:.2f} of {ratio:.1f}x) | '
        f'{t["compile_s"]:.1f} |')
    print(rows[-1], flush=True)
  import jax
  text = '\n'.join([
      f'# XLA:CPU U-Net forward throughput ({os.cpu_count()} cores, jax '
      f'{jax.__version__})', '',
      f'Pix2Pix U-Net, {args.res}x{args.res}x3, batch 1, f32; median of '
      f'{args.iters} calls after warm-up; each variant in a fresh process. '
      '% = share of the matmul rate measured in the same process.', '',
      '| variant | XLA flags | matmul GMAC/s | teacher ngf 64 | student ngf '
      '16 | student speedup (share of true-MAC ratio) | teacher compile s |',
      '|---|---|---|---|---|---|---|', *rows]) + '\n'
  print(text)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    f.write(text)


if __name__ == '__main__':
  main()

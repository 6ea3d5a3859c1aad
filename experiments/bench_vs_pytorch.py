"""Inference time of gcjax's generators next to PyTorch's, on this CPU.

For every generator family (pix2pix U-Net ngf 64 and 16, CycleGAN ResNet-9
ngf 64 with affine instance norm as vintagify, GAN-Compression's mobile
ResNet ngf 16, the 64x64 face DCGAN, the style-based generator at the
DLSGAN paper preset's 128x128) at batch 1 and 4:

* PyTorch runs in a side virtual environment with the CPU torch wheel
  (``python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch
  numpy``) as a worker process (``--stage=torch``) speaking pickles over its
  stdin/stdout; 2 threads, ``eval()``, ``no_grad``, eager. Definitions:
  ``experiments/torch_generators.py``.
* Weights are drawn by PyTorch and converted to Flax variables
  (``gcjax.convert`` for the ResNet-9 and the DCGAN, by module name for the
  rest); both frameworks then run the same inputs, and the table reports
  the largest output difference (the same-function check).
* gcjax runs ``jax.jit(module.apply)`` with its parameters and input on
  the device. Calls alternate between the two frameworks (one call each,
  ``--reps`` rounds, after a warm-up, each after ``--pause`` seconds idle so
  neither runs against the other's spinning worker threads) so load changes
  hit both; medians are reported with gcjax / PyTorch.
* Both processes get gcjax's host-memory policy (``gcjax.hostmem``, what
  gcjax's programs apply; ``--keep_host_memory=0`` leaves glibc's defaults).
* ``--profile`` also profiles each row in both frameworks right after its
  timing (``experiments/op_profile.py``) and writes the ``--top`` op groups
  of each to ``<out>_profile.md``.

  nice -n 0 python -m experiments.bench_vs_pytorch [--reps=7] [--profile]
      [--rows=unet64,unet16,resnet9,mobile16,dcgan,style] [--batches=1,4]
      [--pause=0.05] [--keep_host_memory=1]

Writes experiments/results/bench_vs_pytorch.md (``--out``). ``--tiny``
shrinks every network and image (the test suite's run; its times mean
nothing).
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, 'results', 'bench_vs_pytorch.md')
ROWS = ('unet64', 'unet16', 'resnet9', 'mobile16', 'dcgan', 'style')
TITLES = {'unet64': 'U-Net ngf 64 (OMGD teacher)',
          'unet16': 'U-Net ngf 16 (student)',
          'resnet9': 'ResNet-9 ngf 64 (CycleGAN teacher, vintagify)',
          'mobile16': 'MobileResNet ngf 16 (student)',
          'dcgan': 'DCGAN d 64 (face teacher, 64x64)',
          'style': 'style-based (DLSGAN paper preset, 128x128)'}


def specs(tiny: bool) -> dict[str, dict]:
  """Per row: torch constructor kwargs, input ('image', side) or ('z', n)."""
  if tiny:
    return {
        'unet64': dict(ctor='UNet', kw=dict(ngf=4, num_downs=4),
                       inp=('image', 16)),
        'unet16': dict(ctor='UNet', kw=dict(ngf=2, num_downs=4),
                       inp=('image', 16)),
        'resnet9': dict(ctor='Resnet', kw=dict(ngf=4, n_blocks=2),
                        inp=('image', 16)),
        'mobile16': dict(ctor='MobileResnet', kw=dict(ngf=4, n_blocks=2),
                         inp=('image', 16)),
        'dcgan': dict(ctor='dcgan', kw=dict(nz=8, d=2), inp=('z', 8)),
        'style': dict(ctor='StyleGenerator',
                      kw=dict(z_dim=8, w_dim=8, map_layers=2, resolution=8,
                              ch_base=32, ch_max=4), inp=('z', 8))}
  return {
      'unet64': dict(ctor='UNet', kw=dict(ngf=64, num_downs=8),
                     inp=('image', 256)),
      'unet16': dict(ctor='UNet', kw=dict(ngf=16, num_downs=8),
                     inp=('image', 256)),
      'resnet9': dict(ctor='Resnet', kw=dict(ngf=64, n_blocks=9),
                      inp=('image', 256)),
      'mobile16': dict(ctor='MobileResnet', kw=dict(ngf=16, n_blocks=9),
                       inp=('image', 256)),
      'dcgan': dict(ctor='dcgan', kw=dict(nz=100, d=64), inp=('z', 100)),
      'style': dict(ctor='StyleGenerator',
                    kw=dict(z_dim=512, w_dim=512, map_layers=8,
                            resolution=128, ch_base=8192, ch_max=256),
                    inp=('z', 512))}


# ----------------------------------------------------------------- torch side

def torch_worker() -> None:
  """Serves build/run requests (pickles on stdin, replies on stdout)."""
  import torch

  sys.path.insert(0, ROOT)
  from experiments import torch_generators as tg
  from gcjax import hostmem  # stdlib only: the same allocator policy
  if os.environ.get(hostmem.ENV) == '1':
    hostmem.keep_freed_memory()
  torch.set_num_threads(2)
  torch.set_grad_enabled(False)
  inp, out = sys.stdin.buffer, sys.stdout.buffer
  nets = {}
  while True:
    req = pickle.load(inp)
    if req['cmd'] == 'quit':
      return
    if req['cmd'] == 'build':
      torch.manual_seed(req['seed'])
      net = getattr(tg, req['ctor'])(**req['kw']).eval()
      for m in net.modules():   # non-trivial norm statistics and affines
        if isinstance(m, torch.nn.BatchNorm2d):
          m.running_mean.normal_(0, 0.1)
          m.running_var.uniform_(0.5, 1.5)
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)):
          if m.weight is not None:
            m.weight.normal_(1, 0.1)
            m.bias.normal_(0, 0.1)
      nets[req['name']] = net
      sd = {k: v.numpy() for k, v in net.state_dict().items()
            if not k.endswith('num_batches_tracked')}
      transposed = [k for k, m in net.named_modules()
                    if isinstance(m, torch.nn.ConvTranspose2d)]
      reply = {'sd': sd, 'transposed': transposed,
               'version': str(torch.__version__),
               'threads': torch.get_num_threads()}
    elif req['cmd'] == 'profile':
      from experiments import op_profile
      ops, wall = op_profile.torch_ops(nets[req['name']],
                                       torch.from_numpy(req['x']),
                                       req['reps'])
      reply = {'ops': ops, 'wall': wall}
    else:   # run: one call per request, timed here
      x = torch.from_numpy(req['x'])
      t0 = time.perf_counter()
      y = nets[req['name']](x)
      dt = time.perf_counter() - t0
      reply = {'t': dt, 'y': y.numpy() if req.get('want_y') else None}
    pickle.dump(reply, out, protocol=4)
    out.flush()


class Torch:
  """Client of :func:`torch_worker` in the side interpreter."""

  def __init__(self, python: str):
    if not os.path.exists(python):
      sys.exit(f'no PyTorch interpreter at {python}: python -m venv '
               f'/tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy')
    self.p = subprocess.Popen(
        [python, os.path.abspath(__file__), '--stage=torch'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

  def ask(self, **req):
    pickle.dump(req, self.p.stdin, protocol=4)
    self.p.stdin.flush()
    return pickle.load(self.p.stdout)

  def close(self):
    pickle.dump({'cmd': 'quit'}, self.p.stdin)
    self.p.stdin.close()
    self.p.wait(timeout=60)


# ------------------------------------------------------------------- jax side

_PARAM = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias',
          'mean': 'running_mean', 'var': 'running_var'}


def flax_from_named(sd, transposed, template):
  """Flax variables shaped as ``template`` from a state dict whose modules
  are named as the Flax ones (``experiments.torch_generators``)."""
  import jax
  import numpy as np

  from gcjax import convert
  used = set()

  def leaf(path, spec):
    names = [p.key for p in path[1:]]
    *mods, pname = names
    mod = '.'.join(mods)
    key = (mod + '.' if mod else '') + _PARAM.get(pname, pname)
    w = np.asarray(sd[key])
    used.add(key)
    if pname == 'const':
      w = w.transpose(1, 2, 0)
    elif pname == 'kernel' and w.ndim == 4:
      w = (convert.conv_transpose_kernel(w) if mod in transposed
           else convert.conv_kernel(w))
    elif pname == 'kernel' and w.ndim == 2:
      w = w.T
    if w.shape != spec.shape:
      raise ValueError(f'{key}: {w.shape} != Flax {spec.shape}')
    return np.ascontiguousarray(w, np.float32)

  out = jax.tree_util.tree_map_with_path(leaf, template)
  if set(sd) - used:
    raise ValueError(f'unused torch keys: {sorted(set(sd) - used)[:5]}')
  return out


def flax_net(row: str, spec: dict, sd, transposed):
  """(module, variables) of gcjax's network for a torch state dict."""
  import jax
  import jax.numpy as jnp

  from gcjax import convert
  from gcjax.models import resnet, stylegan, unet
  kw = spec['kw']
  if row == 'resnet9':
    return convert.resnet_module_from_torch(sd), convert.resnet_from_torch(sd)
  if row == 'dcgan':
    return convert.dcgan_module_from_torch(sd), convert.dcgan_from_torch(sd)
  if spec['ctor'] == 'UNet':
    m = unet.UNetGenerator(ngf=kw['ngf'], num_downs=kw['num_downs'])
  elif spec['ctor'] == 'MobileResnet':
    m = resnet.MobileResnetGenerator(ngf=kw['ngf'], n_blocks=kw['n_blocks'])
  else:
    m = stylegan.StyleGenerator(**kw)
  kind, n = spec['inp']
  x = jnp.zeros((1, n, n, 3) if kind == 'image' else (1, n))
  template = jax.eval_shape(lambda: m.init(jax.random.key(0), x))
  return m, flax_from_named(sd, set(transposed), template)


def bench(rows, batches, reps, tiny, torch_python, pause=0.05,
          keep_host_memory=True, profile=False) -> tuple[list, dict]:
  """Measures every (row, batch); returns (table rows, run info)."""
  import jax
  import numpy as np

  from gcjax import hostmem
  info = {'load_before': os.getloadavg(), 'jax': jax.__version__,
          'pause': pause, 'keep_host_memory': keep_host_memory}
  # The same glibc policy in both processes (gcjax's programs apply it).
  os.environ[hostmem.ENV] = '1' if keep_host_memory else '0'
  if keep_host_memory:
    hostmem.keep_freed_memory()
  torch = Torch(torch_python)
  table = []
  try:
    for row in rows:
      spec = specs(tiny)[row]
      built = torch.ask(cmd='build', name=row, ctor=spec['ctor'],
                        kw=spec['kw'], seed=0)
      info['torch'], info['threads'] = built['version'], built['threads']
      module, variables = flax_net(row, spec, built['sd'],
                                   built['transposed'])
      # On the device once, as a trainer or exporter holds them: numpy
      # leaves would be copied into XLA buffers on every call (218 MB for
      # the U-Net 64, a third of its batch-1 time).
      variables = jax.device_put(variables)
      fwd = jax.jit(lambda v, x, m=module: m.apply(v, x)[0])
      kind, n = spec['inp']
      for b in batches:
        rng = np.random.default_rng(b)
        if kind == 'image':
          x = rng.uniform(-1, 1, (b, n, n, 3)).astype(np.float32)
          xt = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        else:
          x = xt = rng.standard_normal((b, n)).astype(np.float32)
        x = jax.device_put(x)   # torch.from_numpy does not copy either
        t0 = time.perf_counter()
        y = np.asarray(fwd(variables, x))
        compile_s = time.perf_counter() - t0
        yt = torch.ask(cmd='run', name=row, x=xt, want_y=True)['y']
        if yt.ndim == 4:
          yt = yt.transpose(0, 2, 3, 1)
        diff = float(np.max(np.abs(y - yt)))
        scale = float(np.max(np.abs(yt)))
        tj, tt = [], []
        for _ in range(reps):
          # A pause before each timed call: XLA's and OpenMP's worker
          # threads spin for a while after their work, and a call started
          # right after the other framework's runs against those spinning
          # threads (PyTorch's 2-thread U-Net 16 measured 725 ms that way,
          # 22 ms alone).
          time.sleep(pause)
          t0 = time.perf_counter()
          fwd(variables, x).block_until_ready()
          tj.append(time.perf_counter() - t0)
          time.sleep(pause)
          tt.append(torch.ask(cmd='run', name=row, x=xt)['t'])
        table.append(dict(row=row, batch=b, torch_ms=1e3 * np.median(tt),
                          jax_ms=1e3 * np.median(tj), diff=diff, scale=scale,
                          compile_s=compile_s))
        if profile:
          from experiments import op_profile
          jops, jwall = op_profile.jax_ops(fwd, variables, x, reps=reps)
          tp = torch.ask(cmd='profile', name=row, x=xt, reps=reps)
          table[-1]['profile'] = dict(
              jax=op_profile.grouped(jops), jax_wall=jwall,
              torch=op_profile.grouped(tp['ops']), torch_wall=tp['wall'])
        print(f'{row} b{b}: torch {table[-1]["torch_ms"]:.1f} ms, gcjax '
              f'{table[-1]["jax_ms"]:.1f} ms, max|diff| {diff:.2e}',
              file=sys.stderr)
  finally:
    torch.close()
  info['load_after'] = os.getloadavg()
  return table, info


def markdown(table, info, reps, tiny) -> str:
  """The results page."""
  la, lb = info['load_before'], info['load_after']
  lines = [
      '# gcjax vs PyTorch: generator inference on CPU',
      '',
      f'{platform.machine()} CPU, {os.cpu_count()} cores; PyTorch '
      f'{info["torch"]} ({info["threads"]} threads, eager, eval, no_grad) '
      f'vs jax {info["jax"]} (`jax.jit`); random weights drawn by PyTorch '
      f'and converted; median of {reps} alternating calls after a warm-up, '
      f'each after a {info["pause"]:.2f} s pause; glibc allocator: '
      + ('freed memory kept (`gcjax.hostmem`) in both processes.'
         if info['keep_host_memory'] else 'defaults.')
      + (' TINY networks (test run): the times mean nothing.' if tiny
         else ''),
      f'Load average (1/5/15 min) before: {la[0]:.2f}/{la[1]:.2f}/'
      f'{la[2]:.2f}, after: {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}.',
      '',
      '| generator | batch | PyTorch ms | gcjax ms | gcjax / PyTorch | '
      'same function: max abs diff (max abs out) | gcjax compile s |',
      '|---|---|---|---|---|---|---|']
  for r in table:
    lines.append(
        f'| {TITLES[r["row"]]} | {r["batch"]} | {r["torch_ms"]:.1f} | '
        f'{r["jax_ms"]:.1f} | {r["jax_ms"] / r["torch_ms"]:.2f}x | '
        f'{r["diff"]:.1e} ({r["scale"]:.2f}) | {r["compile_s"]:.1f} |')
  return '\n'.join(lines) + '\n'


def profile_markdown(table, top) -> str:
  """Per row: the ``top`` op groups of each framework, ms per call."""
  lines = ['# Per-op profiles: gcjax (XLA:CPU) vs PyTorch', '',
           'Same weights and inputs as `bench_vs_pytorch.md`, profiled right '
           'after its timing. gcjax: wall time per call each HLO op ran '
           '(union over threads), grouped by the Flax module that made it '
           '(block/level numbers folded); PyTorch: `torch.profiler` self CPU '
           'time per ATen op and input shapes. Profiling adds overhead to '
           'both totals.', '']
  for r in table:
    p = r.get('profile')
    if not p:
      continue
    lines += [f'## {TITLES[r["row"]]}, batch {r["batch"]}', '',
              f'Profiled wall per call: gcjax {p["jax_wall"]:.1f} ms (ops '
              f'{sum(g["ms"] for g in p["jax"]):.1f}), PyTorch '
              f'{p["torch_wall"]:.1f} ms (ops '
              f'{sum(g["ms"] for g in p["torch"]):.1f}).', '',
              '| # | gcjax op group | n | ms | PyTorch op | n | ms |',
              '|---|---|---|---|---|---|---|']
    for i in range(min(top, max(len(p['jax']), len(p['torch'])))):
      j = p['jax'][i] if i < len(p['jax']) else None
      t = p['torch'][i] if i < len(p['torch']) else None
      lines.append(
          f'| {i + 1} | ' +
          (f'{j["what"]} | {j["n"]} | {j["ms"]:.2f}' if j else ' | | ') +
          ' | ' +
          (f'{t["what"]} | {t["n"]} | {t["ms"]:.2f}' if t else ' | | ') +
          ' |')
    lines.append('')
  return '\n'.join(lines)


def main(argv=None) -> list:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--stage', default='bench', choices=('bench', 'torch'))
  ap.add_argument('--torch_python', default='/tmp/torchvenv/bin/python')
  ap.add_argument('--rows', default=','.join(ROWS))
  ap.add_argument('--batches', default='1,4')
  ap.add_argument('--reps', type=int, default=7)
  ap.add_argument('--pause', type=float, default=0.05,
                  help='seconds of idle before each timed call')
  ap.add_argument('--profile', action='store_true',
                  help='also write per-op profiles of both frameworks '
                  '(experiments/op_profile.py) to <out>_profile.md')
  ap.add_argument('--top', type=int, default=12,
                  help='--profile: ops listed per framework and row')
  ap.add_argument('--keep_host_memory', type=int, default=1,
                  help='1: gcjax.hostmem.keep_freed_memory() in both '
                  'processes (what gcjax programs do); 0: glibc defaults')
  ap.add_argument('--tiny', action='store_true')
  ap.add_argument('--out', default=OUT)
  args = ap.parse_args(argv)
  if args.stage == 'torch':
    torch_worker()
    return []
  rows = [r for r in args.rows.split(',') if r]
  bad = sorted(set(rows) - set(ROWS))
  if bad:
    sys.exit(f'--rows: unknown {bad}; expected a subset of {ROWS}')
  batches = [int(b) for b in args.batches.split(',')]
  table, info = bench(rows, batches, args.reps, args.tiny, args.torch_python,
                      args.pause, bool(args.keep_host_memory), args.profile)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    f.write(markdown(table, info, args.reps, args.tiny))
  print('wrote', args.out, file=sys.stderr)
  if args.profile:
    path = os.path.splitext(args.out)[0] + '_profile.md'
    with open(path, 'w') as f:
      f.write(profile_markdown(table, args.top))
    print('wrote', path, file=sys.stderr)
  return table


if __name__ == '__main__':
  main()

"""Per-operation time of one jitted call on XLA:CPU, from a JAX profile.

``jax_ops(fn, *args)`` traces ``reps`` calls with ``jax.profiler``, reads
the trace back with ``jax.profiler.ProfileData`` and returns, for every HLO
instruction of the compiled program that shows up in it, the wall time it
was running per call (the union over XLA's worker threads of its events,
so an op split across two threads counts once), with what produced it (the
Flax module path of the op's metadata), its kind and its result shape.
``torch_ops(net, x)`` (run in the PyTorch interpreter) is the same table
from ``torch.profiler`` (self CPU time per ATen op and input shapes).
Used by ``experiments/bench_vs_pytorch.py --profile``.
"""

from __future__ import annotations

import collections
import glob
import re
import tempfile

_INSTR = re.compile(r'^\s*%?([\w.\-]+) = (\S+?)(?:\{[^}]*\})? (\w[\w\-]*)\(')
_OPNAME = re.compile(r'op_name="([^"]*)"')


def hlo_index(hlo_text: str) -> dict[str, dict]:
  """Instruction name -> {'shape', 'kind', 'what'} of an HLO module text."""
  out = {}
  for line in hlo_text.splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    name, shape, kind = m.groups()
    what = _OPNAME.search(line)
    what = what.group(1) if what else ''
    what = re.sub(r'jit\([^)]*\)/', '', what)
    if kind == 'fusion':
      k = re.search(r'kind=(\w+)', line)
      kind = f'fusion:{k.group(1)}' if k else kind
    out[name] = {'shape': shape, 'kind': kind, 'what': what}
  return out


def _union_ns(spans: list[tuple[int, int]]) -> int:
  total, end = 0, None
  for s, e in sorted(spans):
    if end is None or s > end:
      total += e - s
      end = e
    elif e > end:
      total += e - end
      end = e
  return total


def jax_ops(fn, *args, reps: int = 5) -> tuple[list[dict], float]:
  """([{'name', 'ms', 'kind', 'shape', 'what'}] by time, wall ms per call)
  of the jitted ``fn(*args)``; ``fn`` is compiled and warmed up first."""
  import time

  import jax
  from jax.profiler import ProfileData

  index = hlo_index(fn.lower(*args).compile().as_text())
  jax.block_until_ready(fn(*args))
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d)
    t0 = time.perf_counter()
    for _ in range(reps):
      jax.block_until_ready(fn(*args))
    wall = (time.perf_counter() - t0) / reps * 1e3
    jax.profiler.stop_trace()
    path = sorted(glob.glob(f'{d}/**/*.xplane.pb', recursive=True))[-1]
    data = ProfileData.from_file(path)
  spans = collections.defaultdict(list)
  for plane in data.planes:
    for line in plane.lines:
      for ev in line.events:
        if ev.name in index:
          s = int(ev.start_ns)
          spans[ev.name].append((s, s + int(ev.duration_ns)))
  rows = [dict(name=n, ms=_union_ns(sp) / reps / 1e6, **index[n])
          for n, sp in spans.items()]
  return sorted(rows, key=lambda r: -r['ms']), wall


def torch_ops(net, x, reps: int = 5) -> tuple[list[dict], float]:
  """The same table for a PyTorch module on CPU (self time per ATen op and
  input shapes, per call)."""
  import time

  import torch
  from torch.profiler import ProfilerActivity, profile

  with torch.no_grad():
    net(x)
    with profile(activities=[ProfilerActivity.CPU],
                 record_shapes=True) as prof:
      t0 = time.perf_counter()
      for _ in range(reps):
        net(x)
      wall = (time.perf_counter() - t0) / reps * 1e3
  rows = []
  for e in prof.key_averages(group_by_input_shape=True):
    ms = e.self_cpu_time_total / reps / 1e3
    if ms > 0:
      rows.append(dict(name=e.key, ms=ms, kind=e.key,
                       shape=str(e.input_shapes)[:80],
                       what=f'{e.count // reps} calls'))
  return sorted(rows, key=lambda r: -r['ms']), wall


def grouped(rows: list[dict]) -> list[dict]:
  """Rows summed by what made them, with numbered blocks/levels folded
  (``block3`` -> ``block*``): [{'what', 'n', 'ms'}] by time."""
  ms, n = collections.Counter(), collections.Counter()
  for r in rows:
    if r['kind'] != r['name']:   # a JAX op: fold the numbering
      what = re.sub(r'([a-z_]+)\d+', r'\1*', r['what'])
      what = what.split('/', 1)[-1] if what else r['shape']
      what = f'{what} ({r["kind"].split(":")[0]})'
    else:   # a PyTorch op: op name and input shapes
      what = f'{r["name"]} {r["shape"]}'.replace(', []', '')
    what = what.replace('|', '/')
    ms[what] += r['ms']
    n[what] += int(r['what'].split()[0]) if r['what'].endswith(' calls') else 1
  return [dict(what=w, n=n[w], ms=m) for w, m in ms.most_common()]

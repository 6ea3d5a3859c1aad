"""Latency of the CycleGAN ResNet teacher vs the mobile student.

Batch 1 at 256x256 on the default backend (CPU here), jitted, 3 warm-up
calls, median of 10. Weights are random (filled from numpy: latency does not
depend on their values). Prints a markdown table.

  python -m experiments.bench_cyclegan_latency [--size 256] [--iters 10]
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from gcjax.metrics import cost
from gcjax.models import resnet


def random_variables(module, x):
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x))
  rng = np.random.default_rng(0)
  return jax.tree.map(
      lambda s: jnp.asarray(0.02 * rng.standard_normal(s.shape), s.dtype),
      shapes)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--size', type=int, default=256)
  ap.add_argument('--iters', type=int, default=10)
  args = ap.parse_args()
  x = jnp.asarray(np.random.default_rng(1).uniform(
      -1, 1, (1, args.size, args.size, 3)), jnp.float32)
  nets = {
      'teacher ResnetGenerator(ngf=64)': resnet.ResnetGenerator(ngf=64),
      'student MobileResnetGenerator(ngf=16)':
          resnet.MobileResnetGenerator(ngf=16),
  }
  print(f'device: {jax.devices()[0].device_kind}, '
        f'load avg {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus, '
        f'input 1x{args.size}x{args.size}x3')
  print('| network | params | GMACs | median ms | p90 ms |')
  print('| --- | ---: | ---: | ---: | ---: |')
  for name, net in nets.items():
    v = random_variables(net, x)
    fwd = jax.jit(lambda v, x, net=net: net.apply(v, x)[0])
    n = cost.count_params(v['params'])
    macs = cost.count_macs(fwd, v, x)['literature']
    lat = cost.measure_latency(fwd, (v, x), n_warmup=3, n_iters=args.iters)
    print(f'| {name} | {n / 1e6:.3f}M | {macs / 1e9:.2f} | '
          f'{1e3 * lat["median_s"]:.1f} | {1e3 * lat["p90_s"]:.1f} |')


if __name__ == '__main__':
  main()

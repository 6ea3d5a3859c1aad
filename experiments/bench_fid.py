"""Measures FID feature throughput (images/s) of the Flax Inception.

Times `gcjax.metrics.fid.inception_fn` on random 299x299x3 batches (no
resize) after one warm-up call, and prints one line per device kind:

  python -m experiments.bench_fid --batch_size 32 --steps 5
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from gcjax import metric_weights
from gcjax.metrics import fid
from gcjax.models import inception


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--size', type=int, default=inception.INPUT_SIZE)
  parser.add_argument('--precision', default='highest',
                      choices=['highest', 'default'])
  parser.add_argument('--random_weights', action='store_true',
                      help='initialize randomly (speed only; no asset needed)')
  args = parser.parse_args()

  t0 = time.perf_counter()
  if args.random_weights:
    variables = jax.jit(inception.FIDInceptionV3().init)(
        jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
  else:
    variables = metric_weights.load_inception_params()
  t_load = time.perf_counter() - t0
  fn = fid.inception_fn(variables, precision=args.precision)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (args.batch_size, args.size, args.size, 3))
  images = images.astype(np.float32)
  t0 = time.perf_counter()
  jax.block_until_ready(fn(images))
  t_first = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(args.steps):
    jax.block_until_ready(fn(images))
  dt = (time.perf_counter() - t0) / args.steps
  dev = jax.devices()[0]
  print(f'device={dev.platform}:{dev.device_kind} x{jax.device_count()} '
        f'batch={args.batch_size} size={args.size} '
        f'precision={args.precision} load={t_load:.1f}s '
        f'compile+first={t_first:.1f}s step={dt:.3f}s '
        f'throughput={args.batch_size / dt:.1f} images/s')


if __name__ == '__main__':
  main()

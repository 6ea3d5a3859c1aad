"""Runs every config's smoke preset and writes its results.json minus times.

The plug-in refactor (issue 11) must not change any number a smoke run
reports; this script makes the record that ``tests/smoke_equality_test.py``
compares against:

  python scripts/smoke_results.py --out=tests/fixtures/smoke_results.json
  python scripts/smoke_results.py --only=pix2pix_gan:smoke --out=x.json \\
      --compare=tests/fixtures/smoke_results.json   # one entry, checked

Runs on 8 fake CPU devices (as the tests do). Latencies and wall times are
dropped; every other figure (losses, PSNR/SSIM, params, MACs) is kept.
"""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.expanduser(
    '~/.cache/gcjax/jax_compilation_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

jax.config.update('jax_threefry_partitionable', False)

# Every config file with its seconds-long presets.
SMOKE = ('pix2pix_gan:smoke', 'pix2pix_omgd:smoke', 'pix2pix_vem:smoke',
         'pix2pix_vid:smoke', 'pix2pix_crd:smoke', 'cyclegan_gan:smoke',
         'cyclegan_omgd:smoke', 'cyclegan_vem:smoke',
         'cyclegan_vem:smoke_online', 'dcgan_teacher:smoke',
         'dcgan_kd:smoke', 'fashion_kd:smoke')
TIMES = ('latency_ms_', 'first_step_s', 'time/')


def load_config(spec: str):
  name, _, preset = spec.partition(':')
  return importlib.import_module(f'configs.{name}').get_config(preset or None)


def strip_times(tree):
  if isinstance(tree, dict):
    return {k: strip_times(v) for k, v in tree.items()
            if not any(k.startswith(t) for t in TIMES)}
  return tree


def run_one(spec: str) -> dict:
  from gcjax import train
  config = load_config(spec)
  with tempfile.TemporaryDirectory() as workdir:
    res = train.run(config, workdir)
  return strip_times(json.loads(json.dumps(res, default=float)))


def compare(want, got, path='', rtol=1e-6) -> list[str]:
  """Differences between two records: missing or added numbers, values
  further apart than ``rtol`` (relative). Empty model entries are ignored."""
  out = []
  if isinstance(want, dict) and isinstance(got, dict):
    for k in sorted(set(want) | set(got)):
      p = f'{path}/{k}'
      if k not in got:
        if want[k] != {}:
          out.append(f'missing {p}')
      elif k not in want:
        if got[k] != {}:
          out.append(f'added {p} = {got[k]}')
      else:
        out += compare(want[k], got[k], p, rtol)
  elif (isinstance(want, (int, float)) and isinstance(got, (int, float))
        and not isinstance(want, bool)):
    if abs(want - got) > rtol * max(abs(want), abs(got), 1e-12):
      out.append(f'{path}: {want} != {got}')
  elif want != got:
    out.append(f'{path}: {want!r} != {got!r}')
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--out', required=True)
  p.add_argument('--only', default='', help='comma-separated specs')
  p.add_argument('--compare', default='',
                 help='a record to compare with (prints the differences)')
  args = p.parse_args()
  specs = args.only.split(',') if args.only else SMOKE
  out = {}
  for spec in specs:
    t0 = time.perf_counter()
    out[spec] = run_one(spec)
    print(f'{spec}: {time.perf_counter() - t0:.1f} s', file=sys.stderr)
  with open(args.out, 'w') as f:
    json.dump(out, f, indent=1, sort_keys=True)
  if args.compare:
    with open(args.compare) as f:
      record = json.load(f)
    diffs = [d for spec in out for d in compare(record[spec], out[spec], spec)]
    print('\n'.join(diffs) or 'equal to the record', file=sys.stderr)
    sys.exit(1 if diffs else 0)


if __name__ == '__main__':
  main()

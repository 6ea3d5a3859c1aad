"""Real-image FID statistics: ``python -m gcjax.stats --config=... --split=test``.

Computes Inception pool3 mean/covariance (+ a KID reservoir) of a configured
dataset split and saves them as ``.npz``. By default the file goes to the
gcjax cache under a name derived from the data config, split and image key,
where the trainer's ``fid`` evaluator finds it automatically (``against =
'target'`` with an empty ``stats_path``); ``--out`` writes elsewhere (name it
in ``evals.fid.stats_path``).

Flags:
  --config: an experiment config (its ``data`` section is used).
  --split: dataset split (default: the config's test split).
  --key: image entry of the split (default: tgt, else img, else b).
  --out: output path (default: the cache path the evaluator looks for).
  --batch_size, --reservoir: feature batch size and KID reservoir rows.
  --limit: first N images only (match ``evals.fid.limit``).
  --verbose: tracebacks for bad input too (otherwise one line, exit 2).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np

from gcjax import errors


def default_path(data_config, split: str, key: str, limit: int = 0) -> str:
  """Where the evaluator looks for saved statistics of ``split``/``key``.

  ``limit`` > 0: statistics of the first ``limit`` images only (what an
  evaluator with ``limit`` compares against).
  """
  from gcjax import assets
  d = data_config.to_dict() if hasattr(data_config, 'to_dict') else data_config
  ident = json.dumps({'name': d['name'], 'args': d['args'], 'split': split,
                      'key': key, 'test_limit': d.get('test_limit', 0),
                      'limit': limit},
                     sort_keys=True, default=str)
  h = hashlib.sha256(ident.encode()).hexdigest()[:16]
  return os.path.join(assets.cache_dir(), 'fid_stats',
                      f"{d['name']}-{split}-{key}-{h}.npz")


MISSING = 'missing'


def cache_problem(path: str) -> str | None:
  """Why the cached statistics at ``path`` cannot be used; None if usable.

  `MISSING` if there is no file; otherwise the reason it is damaged (not
  readable, no recorded digest, arrays differ from it, wrong shapes).
  """
  from gcjax import npz
  from gcjax.metrics import fid
  if not os.path.exists(path):
    return MISSING
  try:
    fid.load_stats(path, require_digest=True)
  except npz.DamagedFile as e:
    return e.reason
  except ValueError as e:
    return ' '.join(str(e).split())
  return None


def image_key(arrays) -> str:
  for k in ('tgt', 'img', 'b', 'src'):
    if k in arrays:
      return k
  raise errors.UserError(f'no image entry among {sorted(arrays)}; name one '
                         'with --key')


def compute(images_u8: np.ndarray, batch_size: int = 32,
            reservoir: int = 2000, progress: bool = True):
  """FeatureStats of uint8 images [N, H, W, C] (streamed in batches)."""
  import tqdm

  from gcjax import metric_weights
  from gcjax.data import pipeline
  from gcjax.metrics import fid
  fn = fid.inception_fn(metric_weights.load_inception_params())
  batch_size = fid.device_multiple(batch_size)
  stats = fid.FeatureStats(reservoir_size=reservoir)
  chunks = (pipeline.to_float(images_u8[i:i + batch_size])
            for i in range(0, len(images_u8), batch_size))
  bar = tqdm.tqdm(total=len(images_u8), disable=not progress, unit='img',
                  desc='inception')
  for f in fid.extract_features(fn, chunks, batch_size):
    stats.update(f)
    bar.update(len(f))
  bar.close()
  return stats


def main(argv):
  del argv
  from absl import flags

  from gcjax import data as data_lib
  from gcjax.metrics import fid
  cfg = flags.FLAGS.config
  split = flags.FLAGS.split or cfg.data.test_split
  arrays = data_lib.load(cfg.data.name, split, **cfg.data.args.to_dict())
  if cfg.data.test_limit > 0:
    arrays = {k: v[:cfg.data.test_limit] for k, v in arrays.items()}
  key = flags.FLAGS.key or image_key(arrays)
  if key not in arrays:
    raise errors.UserError(f'--key={key!r} is not in split {split!r} '
                           f'(has {sorted(arrays)})')
  limit = flags.FLAGS.limit
  out = flags.FLAGS.out or default_path(cfg.data, split, key, limit)
  images = arrays[key][:limit] if limit > 0 else arrays[key]
  stats = compute(images, flags.FLAGS.batch_size, flags.FLAGS.reservoir)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fid.save_stats(out, stats)
  print(f'gcjax.stats: {stats.n} images of {cfg.data.name}/{split}/{key} '
        f'-> {out}', file=sys.stderr)


if __name__ == '__main__':
  from absl import flags
  from ml_collections import config_flags

  from gcjax import cli
  config_flags.DEFINE_config_file('config', None, 'Experiment config.',
                                  lock_config=True)
  flags.DEFINE_string('split', '', 'Dataset split (default: test split).')
  flags.DEFINE_string('key', '', 'Image entry (default: tgt/img/b).')
  flags.DEFINE_string('out', '', 'Output .npz (default: the cache path).')
  flags.DEFINE_integer('batch_size', 32, 'Inception batch size.')
  flags.DEFINE_integer('reservoir', 2000, 'Feature rows kept for KID.')
  flags.DEFINE_integer('limit', 0, 'Use the first N images (0: all); match '
                       'the fid evaluator\'s limit.')
  flags.mark_flag_as_required('config')
  cli.run(main, 'gcjax.stats')

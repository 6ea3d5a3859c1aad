"""Saved real-image FID statistics: compute, save, and use in the evaluator."""

import numpy as np

from configs import common
from gcjax import evaluators, sharding, stats
from gcjax.methods.base import no_eval_inputs
from gcjax.metrics import fid


def test_default_path_depends_on_data_split_key_limit():
  d = common.edges2fashion()
  p = stats.default_path(d, 'test', 'tgt')
  assert p.endswith('.npz') and 'edges2fashion-test-tgt' in p
  assert p != stats.default_path(d, 'train', 'tgt')
  assert p != stats.default_path(d, 'test', 'tgt', limit=100)
  d2 = common.edges2fashion(resolution=64)
  assert p != stats.default_path(d2, 'test', 'tgt')


def test_saved_stats_used_by_fid_evaluator(tmp_path):
  rng = np.random.RandomState(0)
  imgs = rng.randint(0, 255, (4, 32, 32, 1), dtype=np.uint8)
  s = stats.compute(imgs, batch_size=4, reservoir=4, progress=False)
  path = str(tmp_path / 's.npz')
  fid.save_stats(path, s)
  loaded = fid.load_stats(path)
  assert loaded.n == 4
  np.testing.assert_allclose(loaded.mu, s.mu)

  # The "generator" returns the images the statistics were made of; the
  # batch's 'tgt' holds other images. FID against the saved statistics is
  # 0 (both spellings); against the batch (the fallback when stats_path is
  # ignored) it is large.
  other = rng.randint(0, 255, (4, 32, 32, 1), dtype=np.uint8)
  names = evaluators.Names(predict=('gen',), batch=('src', 'tgt'))
  kid = {'batch_size': 4, 'kid_subsets': 2, 'kid_subset_size': 4}
  ev = evaluators.build(
      {'by_prefix': {'type': 'fid', 'target': f'stats:{path}', **kid},
       'by_key': {'type': 'fid', 'target': 'tgt', 'stats_path': path, **kid},
       'vs_batch': {'type': 'fid', 'target': 'tgt', **kid}}, names)
  ctx = evaluators.Context(
      predict={'gen': lambda st, b, f: b['src']}, state=None, frozen=None,
      arrays={'src': imgs, 'tgt': other}, mesh=sharding.create_mesh(),
      batch_size=8, eval_inputs=no_eval_inputs, finalize=None)
  for name in ('by_prefix', 'by_key', 'vs_batch'):
    e, = [x for x in ev if x.name == name]
    res = evaluators.evaluate([e], ctx)
    if name == 'vs_batch':
      assert res['gen']['fid'] > 1.0, res
    else:
      assert abs(res['gen']['fid']) < 1e-3, (name, res)

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

  # A "generator" that returns the targets: FID against the saved stats of
  # the same images is 0.
  names = evaluators.Names(predict=('ident',), batch=('tgt',))
  ev = evaluators.build(
      {'fid': {'type': 'fid', 'target': f'stats:{path}', 'batch_size': 4,
               'kid_subsets': 2, 'kid_subset_size': 4}}, names)
  ctx = evaluators.Context(
      predict={'ident': lambda st, b, f: b['tgt']}, state=None, frozen=None,
      arrays={'tgt': imgs}, mesh=sharding.create_mesh(), batch_size=8,
      eval_inputs=no_eval_inputs, finalize=None)
  res = evaluators.evaluate(ev, ctx)
  assert abs(res['ident']['fid']) < 1e-3

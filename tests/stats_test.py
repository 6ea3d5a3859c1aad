"""Saved real-image FID statistics: compute, save, and use in the evaluator."""

import numpy as np
import pytest
from smoke_runs import group

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


@group('inception')
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



def _fake_compute(images, batch_size=32, reservoir=2000, progress=True):
  """Cheap stand-in for the Inception pass: features = pixel rows."""
  del batch_size, reservoir, progress
  f = np.asarray(images, np.float64).reshape(len(images), -1)[:, :8]
  s = fid.FeatureStats(dim=8, reservoir_size=None)
  s.update(f)
  return s


def test_tampered_cached_fid_stats_are_recomputed(tmp_path, monkeypatch,
                                                  capsys):
  from gcjax import npz, train
  monkeypatch.setattr(stats, 'compute', _fake_compute)
  imgs = np.random.RandomState(0).randint(0, 255, (6, 4, 4, 1), np.uint8)
  path = str(tmp_path / 'cache' / 'fid_stats' / 'x.npz')
  names = evaluators.Names(predict=('ident',), batch=('tgt',))
  evs = evaluators.build({'fid': {'type': 'fid', 'target': 'tgt',
                                  'stats_path': path}}, names)
  train._cache_fid_stats(evs, None, {'tgt': imgs}, True)
  want = fid.load_stats(path, require_digest=True)
  # Tampered: a valid stats file with another mean, digest record kept.
  np.savez(path, mu=want.mu + 1e-3, sigma=want.sigma, n=want.n,
           feats=want.feats)
  with pytest.raises(npz.DamagedFile, match='do not match'):
    fid.load_stats(path)   # also when named by the user (stats:<path>)
  capsys.readouterr()
  train._cache_fid_stats(evs, None, {'tgt': imgs}, True)
  err = capsys.readouterr().err.splitlines()
  assert len([x for x in err if 'cannot be used' in x]) == 1, err
  assert path in err[0] and 'do not match' in err[0]
  got = fid.load_stats(path, require_digest=True)
  np.testing.assert_array_equal(got.mu, want.mu)
  # An intact cache is used as it is.
  train._cache_fid_stats(evs, None, {'tgt': imgs}, True)
  assert not capsys.readouterr().err

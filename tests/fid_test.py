"""Tests for gcjax.metrics.fid: Inception parity, statistics, FID and KID.

The network is gcjax.models.inception; its variables come from
gcjax.metric_weights.load_inception_params.
"""

import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from smoke_runs import group

from gcjax import assets, metric_weights
from gcjax.metrics import fid
from gcjax.models import inception

FIXTURE = (pathlib.Path(__file__).parent / 'fixtures' /
           'fid_default1_features.npz')


@pytest.fixture(scope='module')
def reference():
  with np.load(FIXTURE) as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope='module')
def variables(tmp_path_factory):
  """Converted once per module, into a private cache."""
  mp = pytest.MonkeyPatch()
  mp.setenv('GCJAX_CACHE', str(tmp_path_factory.mktemp('gcjax_cache')))
  v = metric_weights.load_inception_params()
  assert assets.cache_file('fid_inception', 'flax').exists()
  yield v
  mp.undo()


# --------------------------------------------------------------------------
# The network against the PyTorch reference (scripts/make_fid_fixture.py).


def test_params_cover_the_network(variables):
  shapes = jax.eval_shape(inception.FIDInceptionV3().init, jax.random.key(0),
                          jnp.zeros((1, 299, 299, 3)))
  chex.assert_trees_all_equal_shapes_and_dtypes(shapes, variables)
  n = sum(x.size for x in jax.tree.leaves(variables))
  assert n == 21_802_784  # weights + beta + mean + var of 94 convs


@group('inception')
@pytest.mark.parametrize('name', ['a', 'b'])
def test_features_match_torch_reference(inception, reference, name):
  """Square 64x64 images (a) and non-square 40x72 ones (b), which the
  resize stretches to 299x299."""
  feats = inception(reference[f'images_{name}'])
  ref = reference[f'feats_{name}']
  chex.assert_shape(feats, (len(reference[f'images_{name}']), 2048))
  assert feats.min() >= 0
  rel = np.abs(feats - ref).max() / np.abs(ref).max()
  assert rel < 1e-5, rel  # measured 1.9e-6 (float32 summation order)


@pytest.mark.parametrize('name', ['a', 'b'])
def test_preprocess_matches_torch_reference(reference, name):
  x = np.asarray(jax.jit(inception.preprocess)(reference[f'images_{name}']))
  chex.assert_shape(x, (len(reference[f'images_{name}']), 299, 299, 3))
  np.testing.assert_allclose(x[:, 150], reference[f'input_row150_{name}'],
                             rtol=0, atol=2e-6)


def test_preprocess_value_mapping():
  x = jnp.array([-1.0, -2.0, 0.0, 1.0, 3.0, 1 / 127.5 - 1])
  wide = jnp.tile(x, 50)[:299]  # 299 x 299: no resize
  img = jnp.broadcast_to(wide[None, None, :, None], (1, 299, 299, 3))
  out = np.asarray(inception.preprocess(img))[0, 0, :6, 0]
  u8 = np.array([0, 0, 128, 255, 255, 1])  # 127.5 rounds half to even
  np.testing.assert_allclose(out, u8 / 255 * 1.9921875 - 1, atol=2e-7)
  np.testing.assert_allclose(out, (u8 - 128) / 128, atol=1e-6)


def test_grayscale_is_tiled():
  g = np.random.default_rng(0).uniform(-1, 1, (2, 20, 30, 1))
  np.testing.assert_array_equal(inception.preprocess(g),
                                inception.preprocess(np.tile(g, (1, 1, 1, 3))))


def test_resize_matrix_samples_j_times_in_over_out():
  m = inception._resize_matrix(64, 299)
  np.testing.assert_allclose(m.sum(1), 1, atol=1e-6)
  coord = m @ np.arange(64)
  want = np.minimum(np.arange(299) * 64 / 299, 63)
  np.testing.assert_allclose(coord, want, atol=1e-4)


@pytest.mark.parametrize('shape', [(2, 8, 8), (2, 8, 8, 4), (2, 8, 8, 2)])
def test_bad_image_shapes_raise(shape):
  fn = fid.inception_fn({}, devices=jax.devices()[:1])
  with pytest.raises(ValueError, match='C in'):
    fn(np.zeros(shape, np.float32))


# --------------------------------------------------------------------------
# Batching helpers (a stand-in feature function; no network).


def test_data_parallel_shards_and_checks_divisibility():
  devices = jax.devices()
  fn = fid.data_parallel(lambda v, x: x * v['s'], {'s': jnp.float32(2)},
                         devices)
  x = np.arange(len(devices) * 2, dtype=np.float32)
  out = fn(x)
  np.testing.assert_array_equal(out, 2 * x)
  assert len(out.sharding.device_set) == len(devices)
  if len(devices) > 1:
    with pytest.raises(ValueError, match='not divisible'):
      fn(x[:-1])


def test_extract_features_pads_and_compiles_once():
  traced = []

  @jax.jit
  def fake(images):
    traced.append(images.shape)
    return images.reshape(images.shape[0], -1)[:, :2] + 1

  sizes = [3, 5, 1, 4, 2]
  rng = np.random.default_rng(0)
  batches = [rng.uniform(-1, 1, (n, 2, 2, 3)).astype(np.float32)
             for n in sizes]
  out = list(fid.extract_features(fake, iter(batches), batch_size=4))
  assert [len(o) for o in out] == [4, 4, 4, 3]
  want = np.concatenate(batches).reshape(sum(sizes), -1)[:, :2] + 1
  np.testing.assert_allclose(np.concatenate(out), want)
  assert traced == [(4, 2, 2, 3)]


def test_extract_features_rejects_mixed_shapes():
  batches = [np.zeros((2, 4, 4, 3)), np.zeros((2, 5, 4, 3))]
  with pytest.raises(ValueError, match='shape'):
    list(fid.extract_features(lambda x: x[:, 0, 0], batches, 4))


# --------------------------------------------------------------------------
# Statistics, FID and KID on synthetic Gaussian features.


def _gauss(n, d=32, shift=0.0, seed=0):
  """n draws of N(shift, C) in d dims; C is the same for every seed."""
  a = np.random.default_rng(1234).normal(size=(d, d)) / np.sqrt(d)
  z = np.random.default_rng(seed).normal(size=(n, d))
  return z @ (a + np.eye(d)).T + shift


def _stats(f, **kw):
  s = fid.FeatureStats(f.shape[1], **kw)
  s.update(f)
  return s


def test_streaming_stats_equal_np_cov():
  f = _gauss(1000, seed=3) * 0.5 + 100.0  # large mean, small spread
  s = fid.FeatureStats(32)
  for chunk in np.array_split(f, [1, 7, 300, 301, 999]):
    s.update(chunk)
  assert s.n == 1000
  np.testing.assert_allclose(s.mu, f.mean(0), rtol=1e-14)
  np.testing.assert_allclose(s.sigma, np.cov(f, rowvar=False), rtol=1e-9,
                             atol=1e-12)


def test_merge_equals_single_pass():
  f = _gauss(500, seed=4)
  a, b = _stats(f[:123]), _stats(f[123:])
  a.merge(b)
  np.testing.assert_allclose(a.sigma, np.cov(f, rowvar=False), rtol=1e-10)
  np.testing.assert_allclose(a.mu, f.mean(0), rtol=1e-12, atol=1e-14)


def test_reservoir_is_a_sample_of_the_stream():
  f = np.arange(3000, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
  s = fid.FeatureStats(4, reservoir_size=300, seed=1)
  for chunk in np.array_split(f, 17):
    s.update(chunk)
  rows = s.feats[:, 0]
  assert s.feats.shape == (300, 4) and len(np.unique(rows)) == 300
  assert abs(rows.mean() - 1500) < 150  # uniform over the stream
  small = fid.FeatureStats(4, reservoir_size=300)
  small.update(f[:10])
  np.testing.assert_array_equal(small.feats, f[:10])
  assert fid.FeatureStats(4).feats is None


def test_merged_reservoir_samples_both_streams():
  f = np.arange(2000, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
  a = fid.FeatureStats(4, reservoir_size=100, seed=0)
  b = fid.FeatureStats(4, reservoir_size=100, seed=1)
  a.update(f[:500])
  b.update(f[500:])
  a.merge(b)
  rows = a.feats[:, 0]
  assert a.n == 2000 and len(np.unique(rows)) == 100
  assert 5 <= (rows < 500).sum() <= 45  # expected 25 of 100


def test_keep_every_row_for_kid():
  f = _gauss(50, d=8, seed=7).astype(np.float32)
  s = fid.FeatureStats(8, reservoir_size=None)
  assert s.feats.shape == (0, 8)
  for chunk in np.array_split(f, [3, 20, 21]):
    s.update(chunk)
  np.testing.assert_array_equal(s.feats, f)
  np.testing.assert_allclose(s.sigma, np.cov(f.astype(np.float64),
                                             rowvar=False), rtol=1e-12)
  other = fid.FeatureStats(8, reservoir_size=None)
  other.update(f[:5])
  s.merge(other)
  np.testing.assert_array_equal(s.feats, np.concatenate([f, f[:5]]))
  assert s.n == 55
  with pytest.raises(ValueError, match='every row'):
    s.merge(_stats(f))
  with pytest.raises(ValueError, match='reservoir_size'):
    fid.FeatureStats(8, reservoir_size=-1)


def test_fid_of_a_set_with_itself_is_zero():
  s = _stats(_gauss(400, d=64))
  assert abs(fid.fid_from_stats(s.mu, s.sigma, s.mu, s.sigma)) < 1e-6


def test_fid_matches_scipy_sqrtm():
  s1, s2 = _stats(_gauss(300, seed=1)), _stats(_gauss(300, shift=0.3, seed=2))
  covmean = scipy.linalg.sqrtm(s1.sigma @ s2.sigma).real
  want = (np.sum((s1.mu - s2.mu) ** 2) + np.trace(s1.sigma)
          + np.trace(s2.sigma) - 2 * np.trace(covmean))
  got = fid.fid_from_stats(s1.mu, s1.sigma, s2.mu, s2.sigma)
  np.testing.assert_allclose(got, want, rtol=1e-9)


def test_fid_from_the_rows_of_a_small_set_equals_the_full_computation():
  # 20 rows in 64 dims (rank-19 covariance) vs 300 rows: fid() takes the
  # N x N path; it must equal scipy's sqrtm and the D x D eigen route.
  small = fid.FeatureStats(dim=64, reservoir_size=None)
  small.update(_gauss(20, d=64, shift=0.4, seed=3))
  big = _stats(_gauss(300, d=64, seed=4))
  covmean = scipy.linalg.sqrtm(small.sigma @ big.sigma).real
  want = (np.sum((small.mu - big.mu) ** 2) + np.trace(small.sigma)
          + np.trace(big.sigma) - 2 * np.trace(covmean))
  np.testing.assert_allclose(fid.fid(small, big), want, rtol=1e-7)
  np.testing.assert_allclose(
      fid.trace_sqrt_product_lowrank(small.feats, big.sigma),
      fid.trace_sqrt_product(small.sigma, big.sigma), rtol=1e-6)


def test_fid_pure_mean_shift_is_squared_distance():
  s = _stats(_gauss(200))
  d = np.linspace(-1, 1, 32)
  np.testing.assert_allclose(
      fid.fid_from_stats(s.mu, s.sigma, s.mu + d, s.sigma), d @ d, rtol=1e-9)


def test_fid_with_singular_covariances_is_finite():
  s1, s2 = _stats(_gauss(10, d=64, seed=5)), _stats(_gauss(12, d=64, seed=6))
  v = fid.fid_from_stats(s1.mu, s1.sigma, s2.mu, s2.sigma)
  assert np.isfinite(v) and v > 0


def test_same_distribution_is_close_and_shifts_grow_monotonically():
  ref = _gauss(600, seed=10)
  fids, kids = [], []
  for shift in [0.0, 0.2, 0.5, 1.5]:
    f = _gauss(600, shift=shift, seed=20)
    fids.append(fid.fid(_stats(ref), _stats(f)))
    kids.append(fid.kid(ref, f, n_subsets=5, subset_size=300)[0])
  # Same distribution: FID only carries its finite-sample bias.
  assert fids[0] < 0.05 * fids[-1] and fids[0] < 3.0, fids
  assert abs(kids[0]) < 0.01
  assert all(np.diff(fids) > 0), fids
  assert all(np.diff(kids) > 0), kids


def test_kid_matches_direct_formula():
  x, y = _gauss(40, d=8, seed=1), _gauss(40, d=8, shift=0.5, seed=2)
  mean, std = fid.kid(x, y, n_subsets=3, subset_size=40)
  k = lambda a, b: (a @ b / 8 + 1) ** 3
  m = 40
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  want = xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / m**2
  np.testing.assert_allclose(mean, want, rtol=1e-10)
  assert std < 1e-9 * abs(want)  # full subsets: every draw is the same set


def test_kid_rejects_oversized_subsets():
  with pytest.raises(ValueError, match='subset_size'):
    fid.kid(np.zeros((5, 3)), np.zeros((9, 3)), subset_size=6)


@pytest.mark.parametrize('reservoir', [0, 50])
def test_save_load_round_trip(tmp_path, reservoir):
  s = _stats(_gauss(100), reservoir_size=reservoir)
  path = tmp_path / 'real_stats.npz'
  fid.save_stats(path, s)
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      'real_stats.npz', 'real_stats.npz.sha256']   # no temporary files
  back = fid.load_stats(path)
  np.testing.assert_array_equal(back.mu, s.mu)
  np.testing.assert_array_equal(back.sigma, s.sigma)
  assert back.n == 100
  if reservoir:
    np.testing.assert_array_equal(back.feats, s.feats)
  else:
    assert back.feats is None
  assert fid.fid(back, s) < 1e-9


def test_load_stats_names_a_bad_file(tmp_path):
  path = tmp_path / 'x.npz'
  np.savez(path, mu=np.zeros(3))
  with pytest.raises(ValueError, match=r'x\.npz.*missing'):
    fid.load_stats(path)


def test_kid_entry_omits_the_spread_of_identical_subsets():
  from gcjax.evaluators import fid as evaluate
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(40, 8)), rng.normal(0.5, 1, size=(40, 8))
  whole = evaluate.kid_entry(a, b, n_subsets=10, subset_size=1000)
  assert set(whole) == {'kid'}
  np.testing.assert_allclose(whole['kid'], fid.kid(a, b, 1, 40)[0])
  part = evaluate.kid_entry(a, b, n_subsets=10, subset_size=20)
  assert set(part) == {'kid', 'kid_std'} and part['kid_std'] > 0
  # Unequal sizes: subsets of the smaller set's size still differ.
  assert 'kid_std' in evaluate.kid_entry(a, b[:30], 10, 1000)

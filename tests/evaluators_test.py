"""Evaluators as a run uses them: the padded last batch, repeats."""

import jax
import numpy as np

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

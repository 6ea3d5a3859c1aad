"""Tests for gcjax.evaluators.ebm_probe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcjax import errors
from gcjax.evaluators import common, ebm_probe


def _energy(t, s):
  return jnp.mean(jnp.square(t - s), axis=(1, 2, 3))


def test_probe_energies_by_hand():
  rng = np.random.default_rng(0)
  s = jnp.asarray(rng.uniform(-1, 1, (3, 4, 4, 1)), jnp.float32)
  t = s + 0.1
  e = ebm_probe.probe_energies(_energy, t, s, jax.random.key(0), n_steps=0,
                               step_size=1.0, noise_std=0.0, clip=None,
                               clip_at='end')
  np.testing.assert_allclose(e['e_pos'], 0.01, rtol=1e-5)
  # Row i is paired with row i - 1's target.
  shuffled = np.mean((np.roll(np.asarray(t), 1, axis=0) - np.asarray(s))**2,
                     axis=(1, 2, 3))
  np.testing.assert_allclose(e['e_shuffled'], shuffled, rtol=1e-5)
  np.testing.assert_allclose(e['e_neg'], 0.0, atol=1e-7)   # t~ = s
  # With steps the negatives follow the chain from s (noise 0: they stay
  # at the energy's minimum t = s).
  e2 = ebm_probe.probe_energies(_energy, t, s, jax.random.key(0), n_steps=3,
                                step_size=1.0, noise_std=0.5, clip=None,
                                clip_at='end')
  assert float(jnp.min(e2['e_neg'])) > 0.0


def test_evaluator_checks_names():
  names = common.Names(predict=('teacher', 'student'), batch=('src', 'tgt'))
  ebm_probe.Evaluator(names, target='tgt')
  ebm_probe.Evaluator(names, target='teacher')
  with pytest.raises(errors.UserError, match='target'):
    ebm_probe.Evaluator(names, target='nope')
  with pytest.raises(errors.UserError, match='one batch key'):
    ebm_probe.Evaluator(names, target=('tgt', 'teacher'))
  with pytest.raises(errors.UserError, match='pred'):
    ebm_probe.Evaluator(names, pred='nope')

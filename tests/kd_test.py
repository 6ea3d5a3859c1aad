"""Method kd and gan flavour dcgan: sizes, losses, and smoke runs end to end."""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcjax import evaluators, train
from gcjax.methods import kd
from gcjax.methods.gan import dcgan as gan_dcgan
from gcjax.metrics import cost
from gcjax.models import dcgan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name, preset='smoke', **overrides):
  mod = importlib.import_module(f'configs.{name}')
  c = mod.get_config(preset)
  for path, value in overrides.items():
    section, key = path.split('.')
    c[section][key] = value
  c.lock()
  return c


def _kd_method(kind='mse', lambda_adv=0.5, student_d=4, lr=2e-4,
               mi='none'):
  """A kd method with a random 32x32 gray teacher (d=8), data as 'real'."""
  c = _config('fashion_kd', **{'loss.kind': kind,
                               'loss.lambda_adv': lambda_adv,
                               'student.d': student_d, 'mi.kind': mi})
  with c.unlocked():
    c.optim.s.lr = lr
  batch = {'img': jnp.zeros((8, 32, 32, 1)),
           'label': jnp.zeros((8,), jnp.int32)}
  return kd.make(c, batch), batch


@pytest.mark.parametrize('res,out_ch', [(64, 3), (32, 1), (28, 1)])
def test_student_params_match_formula_and_grow_as_d_squared(res, out_ch):
  counts = {}
  for d in (2, 4, 8, 16):
    module = dcgan.DCGANGenerator(d=d, nz=100, out_ch=out_ch, resolution=res)
    shapes = jax.eval_shape(module.init, jax.random.key(0),
                            jnp.zeros((1, 100)))
    counts[d] = cost.count_params(shapes['params'])
    assert counts[d] == dcgan.dcgan_generator_params(d, 100, out_ch, res)
  # f(d) = a d^2 + b d exactly: f(d)/d is linear in d.
  per_d = {d: n / d for d, n in counts.items()}
  a = (per_d[16] - per_d[8]) / 8
  assert a > 0
  assert per_d[4] - per_d[2] == pytest.approx(2 * a)
  assert per_d[8] - per_d[4] == pytest.approx(4 * a)


def test_mse_student_loss_on_fixed_z_decreases():
  method, batch = _kd_method('mse', lr=2e-3)
  frozen = jax.tree.map(jnp.asarray, method.frozen)
  # He-scale the random teacher (its N(0, 0.02) weights and unit running
  # variances give images ~1e-4 from 0) so its images are far from the
  # fresh student's; fan-in of a 4x4 stride-2 transposed conv is 4 * C_in.
  params = frozen['teacher']['params']
  for name, p in params.items():
    if name.startswith('conv'):
      k = p['kernel']
      fan_in = k.shape[2] * (1 if name == 'conv0' else 4)
      params[name] = {'kernel': k / 0.02 * np.sqrt(2.0 / fan_in)}
  z = {'z': jax.random.normal(jax.random.key(7), (8, 100))}

  def fixed_z_mse(state):
    t = method.predict['teacher'](state, z, frozen)
    s = method.predict['student'](state, z, frozen)
    return float(jnp.mean(jnp.square(s - t)))

  state = jax.jit(method.init)(jax.random.key(0))
  step = jax.jit(method.train_step)
  before = fixed_z_mse(state)
  losses = []
  for _ in range(12):
    state, m = step(state, {**batch, **z}, jax.random.key(1), frozen)
    losses.append(float(m['s/loss']))
  # Train-mode MSE on the pinned batch (eval mode lags behind through the
  # batch-norm running statistics).
  assert before > 0.05
  assert losses[0] == pytest.approx(before, rel=0.05)
  assert losses[-1] < 0.85 * losses[0]
  assert np.all(np.diff(losses) < 0)
  assert state.disc is None                      # MSE needs no D


def test_joint_loss_is_mse_plus_lambda_adversarial():
  rng = np.random.default_rng(0)
  s = rng.uniform(-1, 1, (4, 8, 8, 1)).astype(np.float32)
  t = rng.uniform(-1, 1, (4, 8, 8, 1)).astype(np.float32)
  logits = rng.normal(size=(4, 1)).astype(np.float32)
  adv = float(np.mean(np.log1p(np.exp(-logits))))   # NS-GAN G loss by hand
  w = kd.loss_weights('joint', 0.3, 'teacher')
  loss, m = kd.student_loss(jnp.asarray(s), jnp.asarray(t),
                            jnp.asarray(adv), w)
  mse = float(np.mean((s - t) ** 2))
  np.testing.assert_allclose(float(m['mse']), mse, rtol=1e-6)
  np.testing.assert_allclose(float(loss), mse + 0.3 * adv, rtol=1e-6)
  assert kd.loss_weights('mse', 0.3, 'data')[:2] == (1.0, 0.0)
  assert kd.loss_weights('scratch', 0.3, 'data')[:2] == (0.0, 1.0)
  with pytest.raises(ValueError, match='loss.kind'):
    kd.loss_weights('l1', 0.3, 'data')

  # The real step reports the same decomposition, with a nonzero D term.
  method, batch = _kd_method('joint', lambda_adv=0.5)
  batch = {**batch, 'img': jax.random.uniform(jax.random.key(3),
                                              (8, 32, 32, 1), minval=-1)}
  state = jax.jit(method.init)(jax.random.key(0))
  _, m = jax.jit(method.train_step)(state, batch, jax.random.key(1),
                                    method.frozen)
  np.testing.assert_allclose(float(m['s/loss']),
                             float(m['s/mse']) + 0.5 * float(m['s/adv']),
                             rtol=1e-5)
  assert float(m['s/adv']) > 0 and 'd/loss' in m


def test_wgan_gp_critic_steps_and_bad_settings():
  c = _config('dcgan_teacher', **{'loss.adversarial': 'wgan-gp',
                                  'loss.n_critic': 2, 'disc.norm': 'layer'})
  batch = {'img': jax.random.uniform(jax.random.key(0), (8, 32, 32, 1),
                                     minval=-1),
           'label': jnp.zeros((8,), jnp.int32)}
  method = gan_dcgan.make(c, batch)
  state = jax.jit(method.init)(jax.random.key(0))
  new, m = jax.jit(method.train_step)(state, batch, jax.random.key(1), None)
  assert int(new.step) == 1
  assert all(np.isfinite(float(v)) for v in m.values())
  assert float(m['d/gp']) >= 0
  bad = _config('dcgan_teacher', **{'loss.adversarial': 'wgan-gp'})
  with pytest.raises(ValueError, match='disc.norm'):
    gan_dcgan.make(bad, batch)
  odd = {'img': batch['img'][:6], 'label': batch['label'][:6]}
  c3 = _config('dcgan_teacher', **{'loss.n_critic': 4})
  m3 = gan_dcgan.make(c3, odd)
  with pytest.raises(ValueError, match='n_critic'):
    m3.train_step(jax.jit(m3.init)(jax.random.key(0)), odd,
                  jax.random.key(1), None)


def test_missing_teacher_run_is_a_clear_error():
  from gcjax import errors
  c = _config('fashion_kd', **{'teacher.init': 'run:/nonexistent'})
  with pytest.raises(errors.UserError, match='run:/nonexistent: no run'):
    kd.make(c, {'img': jnp.zeros((8, 32, 32, 1))})
  # The default preset names what to pass instead of training on a random
  # teacher.
  with pytest.raises(errors.UserError, match='dcgan_teacher.py run'):
    kd.make(_config('fashion_kd', 'default'), {'img': jnp.zeros((8, 32, 32,
                                                                 1))})


def test_smoke_teacher_then_kd_from_its_export(tmp_path):
  t_dir = str(tmp_path / 'teacher')
  res = train.run(_config('dcgan_teacher'), t_dir)
  # Weights (the formula) + batch-norm running means and variances (14 d).
  assert res['generator']['params'] == dcgan.dcgan_generator_params(
      4, 100, 1, 32) + 14 * 4
  export = os.path.join(t_dir, 'export')
  assert os.path.exists(os.path.join(export, 'generator.npz'))
  c = _config('fashion_kd', **{'teacher.init': f'run:{t_dir}',
                               'loss.kind': 'joint', 'student.d': 2})
  k_dir = str(tmp_path / 'kd')
  res = train.run(c, k_dir)
  assert res['teacher']['params'] == dcgan.dcgan_generator_params(
      4, 100, 1, 32) + 14 * 4
  assert res['student']['params'] < res['teacher']['params']
  assert 0 < res['student']['agree_ssim'] <= 1
  assert os.listdir(os.path.join(k_dir, 'samples'))
  with open(os.path.join(k_dir, 'results.json')) as f:
    assert json.load(f)['_run']['steps'] == 3


def test_smoke_face_kd(tmp_path):
  res = train.run(_config('dcgan_kd'), str(tmp_path))
  # The pretrained teacher: 3.58M weights (+ 1,920 batch-norm statistics).
  assert 3.57e6 < res['teacher']['params'] < 3.59e6
  assert res['student']['params'] < res['teacher']['params'] / 20
  assert res['student']['macs_true'] < res['teacher']['macs_true'] / 20
  # The frozen teacher (14 MB of float32) is never checkpointed.
  ckpt = os.path.join(str(tmp_path), 'checkpoints')
  size = sum(os.path.getsize(os.path.join(r, f))
             for r, _, fs in os.walk(ckpt) for f in fs)
  assert 0 < size < 2e6


def test_mi_add_on_enters_the_student_loss():
  method, batch = _kd_method('mse', mi='vid')
  state = jax.jit(method.init)(jax.random.key(0))
  new, m = jax.jit(method.train_step)(state, batch, jax.random.key(1),
                                      method.frozen)
  assert new.mi is not None
  extra = {k: float(v) for k, v in m.items() if k.startswith('s/')
           and k not in ('s/loss', 's/mse', 's/adv', 's/grad_norm')}
  assert extra, f'no MI student metric in {sorted(m)}'
  assert float(m['s/loss']) != pytest.approx(float(m['s/mse']), abs=1e-7)
  assert all(np.isfinite(float(v)) for v in m.values())


def test_laplacian_evaluator_reports_models_and_real():
  from gcjax import sharding
  from gcjax.methods.base import no_eval_inputs
  rng = np.random.default_rng(0)
  sharp = rng.uniform(-1, 1, (8, 16, 16, 1)).astype(np.float32)
  names = evaluators.Names(predict=('student', 'teacher'), batch=('img',))
  ev = evaluators.build({'lap': {'type': 'laplacian', 'target': ('img',)}},
                        names)
  ctx = evaluators.Context(
      predict={'student': lambda s, b, f: b['img'] * 0,
               'teacher': lambda s, b, f: b['img']},
      state=None, frozen=None, arrays={'img': sharp},
      mesh=sharding.create_mesh(), batch_size=8, eval_inputs=no_eval_inputs,
      finalize=None)
  out = evaluators.evaluate(ev, ctx)
  assert out['student']['laplacian_var'] == 0.0
  assert out['teacher']['laplacian_var'] > 0.01
  assert out['real'] == out['teacher']

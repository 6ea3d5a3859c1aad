"""Method prune: recipes, masks through the train step, teachers from a gan
run, materialized exports, and both smoke configs end to end."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import dcgan_prune, dcgan_teacher, pix2pix_prune
from gcjax import chain, errors, pruning, teachers, train
from gcjax.methods import prune
from gcjax.methods.prune import common


def _section(**kw):
  c = dcgan_prune.get_config('smoke').prune
  c.update(kw)
  return c


def test_recipes_follow_the_appendix():
  r = {n: common.make_recipe(_section(recipe=n), lambda_task=7.0)
       for n in common.RECIPES}
  # (weight adv, task, distill, D trains, D pruned, from scratch)
  want = {'self': (1, 7, 10, False, False, False),
          'naive': (1, 7, 0, True, False, False),
          'distill': (0, 0, 10, False, False, False),
          'scratch': (1, 7, 0, True, False, True),
          'both': (1, 7, 0, True, True, False)}
  for name, w in want.items():
    got = r[name]
    assert (got.adv, got.task, got.distill, got.train_disc, got.prune_disc,
            got.scratch) == w, name
  assert common.make_recipe(_section(recipe='self', train_disc=True)
                            ).train_disc
  with pytest.raises(errors.UserError, match="prune.recipe='selff'"):
    common.make_recipe(_section(recipe='selff'))


def _smoke_method(arg, **overrides):
  c = dcgan_prune.get_config(arg)
  for k, v in overrides.items():
    section, key = k.split('.')
    c[section][key] = v
  c.lock()
  batch = {'img': jnp.zeros((8, 32, 32, 1)),
           'label': jnp.zeros((8,), jnp.int32)}
  return prune.make(c, batch), c


def test_self_supervised_loss_is_adversarial_plus_lambda_distillation():
  method, c = _smoke_method('smoke,recipe=self,kind=fine')
  frozen = jax.tree.map(jnp.asarray, method.frozen)
  state = jax.jit(method.init)(jax.random.key(0))
  assert state.disc is None and 'disc_state' in frozen   # D is frozen
  batch = {'img': jnp.zeros((8, 32, 32, 1))}
  new, m = jax.jit(method.train_step)(state, batch, jax.random.key(1),
                                      frozen)
  assert float(m['s/adv']) > 0 and float(m['s/distill']) > 0
  np.testing.assert_allclose(
      float(m['s/loss']),
      float(m['s/adv']) + c.prune.lambda_distill * float(m['s/distill']),
      rtol=1e-5)
  assert 'd/loss' not in m
  # distill-only: no adversarial term at all.
  method, _ = _smoke_method('smoke,recipe=distill')
  state = jax.jit(method.init)(jax.random.key(0))
  _, m = jax.jit(method.train_step)(state, batch, jax.random.key(1),
                                    jax.tree.map(jnp.asarray, method.frozen))
  assert 's/adv' not in m
  np.testing.assert_allclose(float(m['s/loss']),
                             10.0 * float(m['s/distill']), rtol=1e-5)


class _FakeMI:
  """An MI add-on whose student term is 0.25 * sum(t_pos * s^2)."""

  def student_loss(self, state, t_pos, s, aux):
    assert state == 'mi-state' and aux == 'mi-aux'
    term = 0.25 * jnp.sum(t_pos * s ** 2)
    return term, {'mi/student_term': term}


@pytest.mark.parametrize('loss_kind,distill', [('mse', 1.5), ('l1', 1.0)])
def test_add_distill_is_the_hand_computed_sum_with_the_mi_term(loss_kind,
                                                               distill):
  img = jnp.array([0.0, 1.0, 2.0, 3.0]).reshape(1, 2, 2, 1)
  t_img = jnp.ones((1, 2, 2, 1))
  t_pos = jnp.array([0.0, 0.0, 0.0, 2.0]).reshape(1, 2, 2, 1)
  # differences -1, 0, 1, 2: mse 6/4 = 1.5, l1 4/4 = 1.0; MI 0.25 * 2 * 3^2
  # (the arguments swapped would give 0.25 * 3 * 2^2).
  recipe = common.make_recipe(_section(recipe='self', distill_loss=loss_kind,
                                       lambda_distill=10.0))
  m = {}
  loss = common.add_distill(jnp.asarray(0.5), m, img, t_img, t_pos,
                            recipe=recipe, mi=_FakeMI(), mi_state='mi-state',
                            mi_aux='mi-aux')
  assert float(loss) == pytest.approx(0.5 + 10.0 * distill + 4.5)
  assert float(m['distill']) == pytest.approx(distill)
  assert float(m['mi/student_term']) == pytest.approx(4.5)
  # No distillation (naive fine-tuning): no MI term either.
  m = {}
  naive = common.make_recipe(_section(recipe='naive'))
  loss = common.add_distill(jnp.asarray(0.5), m, img, t_img, t_pos,
                            recipe=naive, mi=_FakeMI(), mi_state='mi-state',
                            mi_aux='mi-aux')
  assert float(loss) == 0.5 and m == {}


def test_self_supervised_step_with_vid_adds_the_mi_term_to_the_g_loss():
  method, c = _smoke_method('smoke,recipe=self,mi=vid')
  state = jax.jit(method.init)(jax.random.key(0))
  _, m = jax.jit(method.train_step)(state, {'img': jnp.zeros((8, 32, 32, 1))},
                                    jax.random.key(1),
                                    jax.tree.map(jnp.asarray, method.frozen))
  term = float(m['s/mi/student_term'])
  assert abs(term) > 1e-3
  np.testing.assert_allclose(
      float(m['s/loss']),
      float(m['s/adv']) + c.prune.lambda_distill * float(m['s/distill'])
      + term, rtol=1e-5)


@pytest.mark.parametrize('kind', ['fine', 'filter'])
def test_agp_masks_grow_and_pruned_weights_stay_zero_in_the_step(kind):
  method, c = _smoke_method(f'smoke,recipe=naive,kind={kind},sparsity=0.75',
                            **{'prune.agp_end': 0.75,
                               'prune.agp_updates': 3})
  frozen = jax.tree.map(jnp.asarray, method.frozen)
  state = jax.jit(method.init)(jax.random.key(0))
  step = jax.jit(method.train_step)
  batch = {'img': jax.random.uniform(jax.random.key(5), (8, 32, 32, 1),
                                     minval=-1, maxval=1)}
  prev = state.masks
  targets = []
  for _ in range(c.total_steps):
    state, m = step(state, batch, jax.random.key(1), frozen)
    targets.append(float(m['prune/target']))
    masks, params = state.masks, state.student.params
    for mk, p in zip(jax.tree.leaves(masks), jax.tree.leaves(params)):
      assert bool(jnp.all(jnp.where(mk, True, p == 0.0)))
    for old, new in zip(jax.tree.leaves(prev), jax.tree.leaves(masks)):
      assert bool(jnp.all(old | ~new))       # a pruned weight stays pruned
    prev = masks
  # 4 steps, window [0, 3], every step: s = 0.75 (1 - (1 - t/3)^3).
  np.testing.assert_allclose(
      targets, [0.75 * (1 - (1 - t / 3) ** 3) for t in range(4)], atol=1e-6)
  unit = 'filters' if kind == 'filter' else 'sparsity'
  assert float(m[f'prune/{unit}']) == pytest.approx(0.75, abs=0.02)


@pytest.fixture(scope='module')
def gan_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('dcgan_teacher'))
  c = dcgan_teacher.get_config('smoke')
  c.generator.d = 8
  train.run(c, workdir)
  return workdir


def test_teacher_disc_from_a_gan_run_and_a_materialized_export(gan_run,
                                                               tmp_path):
  c = dcgan_prune.get_config('smoke,kind=filter,recipe=self')
  c.teacher.init = f'run:{gan_run}'
  c.lock()
  batch = {'img': jnp.zeros((8, 32, 32, 1))}
  method = prune.make(c, batch)
  _, d_vars = teachers.load(f'run:{gan_run}:disc')
  for a, b in zip(jax.tree.leaves(method.frozen['disc_state'].params),
                  jax.tree.leaves(d_vars['params'])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  res = train.run(c, str(tmp_path))
  # conv1 (16 -> 8 filters) and conv2 (8 -> 4) of the d=8 teacher.
  with open(os.path.join(tmp_path, 'export', 'card.json')) as f:
    card = json.load(f)['networks']
  assert card['student']['fields']['widths'] == [32, 8, 4]
  # Dropped: conv1's 8 filters (16x32 each), conv2's inputs and 4 filters,
  # conv3's 4 inputs, and scale, bias, mean, var of 8 + 4 channels.
  drop = 8 * 16 * 32 + (16 * 16 * 8 - 16 * 8 * 4) + 4 * 16 + 4 * (8 + 4)
  assert res['teacher']['params'] - res['student']['params'] == drop
  assert res['student']['macs_true'] < res['teacher']['macs_true']
  assert 'macs_nonzero' not in res['student']     # dense after all
  module, variables = teachers.load(f'run:{tmp_path}')
  z = jax.random.normal(jax.random.key(3), (4, 100))
  y = module.apply(variables, z)[0]
  assert y.shape == (4, 32, 32, 1)


def test_default_trains_the_missing_teacher_first_then_reuses_it(tmp_path):
  for cfg, gan in ((dcgan_prune, 'dcgan_teacher.py'),
                   (pix2pix_prune, 'pix2pix_gan.py')):
    d = cfg.get_config()
    assert d.teacher.init.startswith('run:runs/'), cfg.__name__
    assert d.teacher.train.method == 'gan', gan
  t_dir = str(tmp_path / 'teacher')
  c = dcgan_prune.get_config('smoke,recipe=self')
  c.teacher.init = f'run:{t_dir}'
  c.teacher.train = dcgan_teacher.get_config('smoke')
  c.teacher.train.generator.d = 8
  res = train.run(c, str(tmp_path / 'pruned'))
  card = os.path.join(t_dir, 'export', 'card.json')
  assert os.path.isfile(card)
  with open(card) as f:
    assert json.load(f)['networks']['generator']['fields']['d'] == 8
  # The pruned run's teacher is the one just trained (d=8: 16 conv1 filters).
  assert res['teacher']['params'] == res['student']['params']
  g, _ = teachers.load(f'run:{t_dir}')
  assert g.d == 8 and res['student']['macs_nonzero'] < res['teacher'][
      'macs_true']
  stamp = os.path.getmtime(card)
  def no_run(*_):
    raise AssertionError('the finished teacher was trained again')
  assert chain.teacher_first(c, str(tmp_path / 'pruned'), no_run) is c
  assert os.path.getmtime(card) == stamp


def test_pix2pix_smoke_runs_end_to_end_with_nonzero_macs(tmp_path):
  c = pix2pix_prune.get_config('smoke,kind=fine,sparsity=0.5')
  res = train.run(c, str(tmp_path))
  s, t = res['student'], res['teacher']
  assert s['params'] == t['params']
  assert t['macs_true'] > s['macs_nonzero'] > 0.4 * t['macs_true']
  assert np.isfinite(s['agree_psnr'])


def test_bad_prune_settings_name_the_key():
  c = pix2pix_prune.get_config('smoke')
  c.prune.task = 'common'
  with pytest.raises(errors.UserError, match="prune.task='common'"):
    prune.make(c, None)
  sec = ml_collections.ConfigDict({'init': 'run:/x/y', 'disc_init': ''})
  assert common.disc_spec(sec) == 'run:/x/y:disc'
  sec.init = 'run:/x/y:generator'
  assert common.disc_spec(sec) == 'run:/x/y:disc'
  with pytest.raises(errors.UserError, match='expected a fraction'):
    pruning.magnitude_masks({'a': {'kernel': jnp.ones((1, 1, 1, 4))}}, 1.5,
                            ('a',))

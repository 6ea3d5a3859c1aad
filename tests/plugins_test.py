"""The plug-in surface: a data-free method from outside gcjax, evaluator
selection, and method lookup."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from configs import common, pix2pix_gan
from gcjax import errors, evaluators, methods, teachers, train


def _toy_config():
  c = common.base()
  c.method = 'plugins.toy_datafree'
  c.data = common.no_data(batch_size=8, eval_rows=16)
  c.teacher = ml_collections.ConfigDict({'d': 4, 'nz': 8, 'init': ''})
  c.student = ml_collections.ConfigDict({'d': 2})
  c.optim = ml_collections.ConfigDict({'s': common.adam(1e-3)})
  c.total_steps = 3
  c.log_every = c.ckpt_every = 3
  c.n_samples = 2
  c.eval_batch_size = 8
  c.evals = ml_collections.ConfigDict({
      'image': common.image_eval(('teacher',)),
      'cost': common.cost_eval(2, 2)})
  c.lock()
  return c


def test_data_free_toy_method_runs_without_any_dataset(tmp_path,
                                                       monkeypatch):
  from gcjax import data

  def no_datasets(*args, **kwargs):
    raise AssertionError(f'a dataset was loaded: {args}')

  monkeypatch.setattr(data, 'load', no_datasets)
  workdir = str(tmp_path)
  res = train.run(_toy_config(), workdir)
  assert res['_run']['steps'] == 3
  assert np.isfinite(res['student']['agree_psnr'])
  assert res['student']['params'] < res['teacher']['params']
  assert os.listdir(os.path.join(workdir, 'samples'))
  with open(os.path.join(workdir, 'export', 'card.json')) as f:
    assert list(json.load(f)['networks']) == ['student']
  # The export rebuilds the student: its outputs on the evaluators' first
  # latents give the agreement the run reported (16 rows, 2 batches of 8).
  module, variables = teachers.load(f'run:{workdir}')
  cfg = _toy_config()
  toy = methods.get(cfg.method).make(cfg, None)
  psnr = []
  for i in range(2):
    z = toy.eval_inputs({'_row': np.arange(8)},
                        jax.random.fold_in(jax.random.key(1000), i))['z']
    s = module.apply(variables, z, train=False)[0]
    t = toy.predict['teacher'](None, {'z': z}, toy.frozen)
    from gcjax.metrics import image
    psnr.append(np.asarray(image.psnr(np.asarray(s), np.asarray(t))))
  np.testing.assert_allclose(np.mean(np.concatenate(psnr)),
                             res['student']['agree_psnr'], rtol=1e-5)


def test_data_method_without_data_is_refused(tmp_path):
  c = pix2pix_gan.get_config('smoke')
  c.data = common.no_data(batch_size=8, eval_rows=8)
  with pytest.raises(errors.UserError, match=r"gan \(pix2pix\) trains on "
                                             'data'):
    train.run(c, str(tmp_path))


NAMES = evaluators.Names(predict=('teacher', 'student'), batch=('src', 'tgt'))


def test_evaluator_types_are_modules():
  assert {'image', 'fid', 'lpips', 'cost', 'is', 'laplacian'} <= set(
      evaluators.available())
  ev, = evaluators.build({'x': {'type': 'image',
                                'target': ('tgt', 'teacher')}}, NAMES)
  assert ev.kind == 'image'
  assert ev.evaluator.pred == ('teacher', 'student')


@pytest.mark.parametrize('section,match', [
    ({'type': 'fidd'}, r"config.evals.x: evaluator type 'fidd' does not "
                       r'exist; known: .*cost, .*fid, image, is, laplacian'),
    ({'type': 'image', 'against': 'tgt'}, r"unknown keys \['against'\]"),
    ({'type': 'image', 'target': 'label'}, "target 'label' is neither"),
    ({'type': 'image', 'pred': 'teachr'}, r"pred \['teachr'\] are not"),
    ({'type': 'fid', 'target': ('tgt', 'teacher')}, 'one target'),
])
def test_bad_evaluator_sections_name_the_problem(section, match):
  with pytest.raises(errors.UserError, match=match):
    evaluators.build({'x': section}, NAMES)


def test_method_lookup():
  assert {'gan', 'omgd', 'kd'} <= set(methods.available())
  with pytest.raises(errors.UserError, match="'nope' is not an available "
                                             'method; known: gan, kd, kdit, omgd'):
    methods.get('nope')
  with pytest.raises(errors.UserError, match="no module 'nowhere'"):
    methods.get('nowhere.method')
  with pytest.raises(errors.UserError, match="config.gan.flavor='x'; "
                                             'expected one of cyclegan, '
                                             'dcgan, pix2pix'):
    methods.dispatch('gcjax.methods.gan', 'gan.flavor', 'x', None, None)

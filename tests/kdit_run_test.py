"""KDIT end to end: stage-1 smoke runs with no dataset loaded, stage-2
smoke starts from the stage-1 smoke's export, stage 2 without an init is
refused unless it is the from-scratch baseline, and a stage 1 without a
teacher trains one first (``teacher.train``, ``gcjax.chain``)."""

import importlib
import json
import os

import jax
import numpy as np
import pytest

from configs import kdit_teacher
from gcjax import chain, errors, methods, teachers, train


def _config(student, arg):
  return importlib.import_module(f'configs.kdit_{student}').get_config(arg)


@pytest.mark.parametrize('student,exports', [
    ('i2i', ['student', 'mapping', 'disc']),
    ('x2i', ['student', 'semantic_encoder', 'disc'])])
def test_stage1_without_data_then_stage2_from_its_export(
    student, exports, tmp_path, monkeypatch):
  from gcjax import data
  real_load = data.load

  def no_datasets(*args, **kwargs):
    raise AssertionError(f'a dataset was loaded: {args}')

  monkeypatch.setattr(data, 'load', no_datasets)
  s1 = str(tmp_path / 's1')
  c = _config(student, 'smoke')
  c.lock()
  res = train.run(c, s1)
  assert np.isfinite(res['student']['agree_psnr'])
  with open(os.path.join(s1, 'export', 'card.json')) as f:
    assert sorted(json.load(f)['networks']) == sorted(exports)

  monkeypatch.setattr(data, 'load', real_load)
  c2 = _config(student, 'smoke,stage2')
  c2.student.init = f'run:{s1}'
  # Stage 2's first state is stage 1's student and discriminator.
  sample = {k: v[:8] for k, v in real_load(
      'fashion', 'train', resolution=16, channels=1, per_class=1).items()}
  sample = {'img': sample['img'].astype(np.float32) / 127.5 - 1,
            'label': sample['label']}
  m2 = methods.get('kdit').make(c2, sample)
  state = m2.init(jax.random.key(0))
  for net in ('student', 'disc'):
    _, v = teachers.load(f'run:{s1}:{net}')
    got = getattr(state, net).params
    jax.tree.map(np.testing.assert_array_equal, got, v['params'])
  s2 = str(tmp_path / 's2')
  c2.lock()
  res2 = train.run(c2, s2)
  assert 0.0 <= res2['student']['rc'] <= 100.0
  assert os.path.isfile(os.path.join(s2, 'export', 'card.json'))


def test_stage2_without_init_is_refused_unless_scratch(tmp_path):
  c = _config('i2i', 'smoke,stage2')
  with pytest.raises(errors.UserError, match='student.init is empty'):
    train.run(c, str(tmp_path / 'a'))
  assert _config('i2i', 'smoke,scratch').kdit.from_scratch
  c = _config('x2i', 'smoke')
  c.teacher.update(random=False, train='')
  with pytest.raises(errors.UserError, match='configs/kdit_teacher.py'):
    train.run(c, str(tmp_path / 'b'))


@pytest.mark.parametrize('student', ['i2i', 'x2i'])
def test_default_preset_trains_the_teacher_first_once(student, tmp_path):
  c = _config(student, '')
  assert not c.teacher.init and c.teacher.train == 'configs/kdit_teacher.py'
  assert not chain.needs_teacher(_config(student, 'stage2'))
  calls = []

  def fake_run(config, workdir):
    calls.append((config, workdir))
    os.makedirs(os.path.join(workdir, 'export'))
    open(os.path.join(workdir, 'export', 'card.json'), 'w').close()

  w = str(tmp_path / 's1')
  got = chain.teacher_first(c, w, fake_run)
  (tc, tw), = calls
  assert tw == os.path.join(w, 'teacher')
  assert tc.to_dict() == kdit_teacher.get_config().to_dict()
  assert got.teacher.init == f'run:{tw}' and not c.teacher.init
  # A finished teacher is reused; train_steps shortens a new one.
  assert chain.teacher_first(c, w, fake_run).teacher.init == f'run:{tw}'
  assert len(calls) == 1
  c.teacher.train_steps = 7
  chain.teacher_first(c, str(tmp_path / 'other'), fake_run)
  assert calls[-1][0].total_steps == 7


def test_stage1_smoke_with_a_teacher_trained_first(tmp_path):
  c = _config('x2i', 'smoke')
  c.teacher.update(random=False, train='configs/kdit_teacher.py:smoke')
  c.lock()
  w = str(tmp_path / 's1')
  res = train.run(c, w)
  assert np.isfinite(res['student']['agree_psnr'])
  t = os.path.join(w, 'teacher')
  with open(os.path.join(t, 'export', 'card.json')) as f:
    assert sorted(json.load(f)['networks']) == ['disc', 'generator']
  with open(os.path.join(w, 'config.json')) as f:
    assert json.load(f)['teacher']['init'] == f'run:{t}'
  # Stage 1 used that teacher: its semantic encoder starts from the
  # teacher's D and moved by at most 3 Adam steps of lr 1e-4.
  _, dv = teachers.load(f'run:{t}:disc')
  _, sv = teachers.load(f'run:{w}:semantic_encoder')
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-3),
               sv, dv)

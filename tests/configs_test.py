"""Every config file x preset builds, locks, and matches the schema record.

``fixtures/configs_schema.json`` records every key and value (as ``repr``,
so tuple/list and int/float differences show) of every config x preset.
A config change that is meant to change values or add keys regenerates it:

  python -m tests.configs_test --regen
"""

import importlib
import json
import os
import pkgutil
import sys

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

import configs
from configs import common
from gcjax import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(ROOT, 'tests', 'fixtures', 'configs_schema.json')
NAMES = sorted(m.name for m in pkgutil.iter_modules(configs.__path__)
               if m.name != 'common')
CASES = [(name, preset) for name in NAMES for preset in
         importlib.import_module(f'configs.{name}').PRESETS]


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = repr(v)
  return out


def _record(name, preset):
  c = importlib.import_module(f'configs.{name}').get_config(preset)
  return _flat(c.to_dict())


def _all_records():
  return {f'{name}:{preset}': _record(name, preset)
          for name, preset in CASES}


def test_every_file_declares_presets():
  assert len(NAMES) >= 11
  for name in NAMES:
    presets = importlib.import_module(f'configs.{name}').PRESETS
    assert isinstance(presets, tuple) and presets[0] == 'default', name


@pytest.mark.parametrize('name,preset', CASES)
def test_builds_and_locks(name, preset):
  mod = importlib.import_module(f'configs.{name}')
  c = mod.get_config(preset)
  assert isinstance(c, ml_collections.ConfigDict)
  c.lock()
  with pytest.raises((AttributeError, KeyError)):
    c.not_a_key = 1
  # No preset is the same as :default.
  assert mod.get_config(None) == mod.get_config('default')


def test_schema_and_values_match_the_record():
  with open(RECORD) as f:
    want = json.load(f)
  got = _all_records()
  assert sorted(got) == sorted(want)
  for case in want:
    assert got[case] == want[case], case


def test_composed_arg():
  from configs import common, pix2pix_omgd, pix2pix_vem
  c = pix2pix_vem.get_config('smoke,mi=vid')
  smoke = pix2pix_vem.get_config('smoke')
  assert c.mi.kind == 'vid' and smoke.mi.kind == 'vem'
  assert c.data.args.resolution == 16 and c.total_steps == 3
  with c.unlocked():
    c.mi.kind = 'vem'
    # VEM runs also get the held-out EBM probes.
    c.evals.ebm = common.ebm_probe_eval('tgt')
  assert c == smoke
  # The thin files are the base file with another default mi.kind.
  assert pix2pix_vem.get_config('paper') == pix2pix_omgd.get_config(
      'paper,mi=vem')


def test_unknown_preset_names_it():
  from configs import pix2pix_vem
  with pytest.raises(errors.UserError) as e:
    pix2pix_vem.get_config('smok')
  msg = str(e.value)
  assert "'smok'" in msg and 'pix2pix_vem.py' in msg
  assert 'smoke' in msg and 'paper' in msg and '\n' not in msg


@pytest.mark.parametrize('arg,word', [
    ('smoke,paper', "'paper'"), ('mi=foo', "'foo'"), ('x=1', "'x'"),
    ('smoke,mi', "'mi'")])
def test_bad_args_raise_user_error(arg, word):
  from configs import pix2pix_omgd
  with pytest.raises(errors.UserError, match=word):
    pix2pix_omgd.get_config(arg)


def test_parse_arg_types():
  a = common.parse_arg('smoke,n=3,lr=0.5,fast,name=x,off=false',
                       presets=('default', 'smoke'), n=1, lr=1.0,
                       fast=False, name='', off=True)
  assert (a.preset, a.n, a.lr, a.fast, a.name, a.off) == (
      'smoke', 3, 0.5, True, 'x', False)
  assert common.parse_arg(None, presets=('default', 'smoke'), n=1).to_dict(
  ) == {'preset': 'default', 'n': 1}
  with pytest.raises(errors.UserError, match="n='abc' is not a int"):
    common.parse_arg('n=abc', source='configs/x.py', n=1)


def _parse_config_flag(arg):
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=fv,
                                  lock_config=True)
  fv(['prog', f'--config={arg}'])
  return fv.config


def test_config_flags_by_path_from_root(monkeypatch):
  monkeypatch.chdir(ROOT)
  c = _parse_config_flag('configs/pix2pix_vem.py:smoke,mi=vid')
  assert c.mi.kind == 'vid' and c.total_steps == 3


def test_config_flags_by_path_from_elsewhere(monkeypatch, tmp_path):
  # As with an installed package: `configs` is imported, not found by cwd.
  monkeypatch.chdir(tmp_path)
  c = _parse_config_flag(os.path.join(ROOT, 'configs', 'cyclegan_vem.py')
                         + ':smoke_online')
  assert c.mi.kind == 'vem' and c.cyclegan.domains == ('src', 'tgt')


if __name__ == '__main__':
  if sys.argv[1:] == ['--regen']:
    with open(RECORD, 'w') as f:
      json.dump(_all_records(), f, indent=0, sort_keys=True)
      f.write('\n')
    print(f'wrote {RECORD} ({len(CASES)} config x preset)')
  else:
    sys.exit(pytest.main([__file__, '-q']))

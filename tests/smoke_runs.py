"""The smoke runs the end-to-end tests share: each spec trains once.

``conftest.smoke_run(spec) -> (workdir, results)`` trains a config's smoke
preset (``scripts/smoke_results.SMOKE``) the first time a test of this
process asks for it and keeps its workdir for the session. Tests that read
one spec's run carry ``group(spec)`` (an xdist group), so ``pytest -n``
sends them to the same worker and the run compiles and trains once. Tests
must not change the run's workdir or results.
"""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    'smoke_results', os.path.join(ROOT, 'scripts', 'smoke_results.py'))
smoke_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smoke_results)

SMOKE = smoke_results.SMOKE
_RUNS: dict[str, tuple[str, dict]] = {}


def group(spec: str):
  """The xdist group of the tests that read ``spec``'s run."""
  return pytest.mark.xdist_group(spec)


def per_spec(specs):
  """Parametrizes a test over ``specs`` ('spec'), one group per spec."""
  return pytest.mark.parametrize('spec', [
      pytest.param(s, marks=group(s)) for s in specs])


def config(spec: str, **overrides):
  """``configs.<name>.get_config(preset)`` with dotted-key overrides."""
  c = smoke_results.load_config(spec)
  for key, value in overrides.items():
    section, _, name = key.rpartition('.')
    target = c
    for part in filter(None, section.split('.')):
      target = target[part]
    target[name] = value
  return c


def run(spec: str, tmp_path_factory) -> tuple[str, dict]:
  """(workdir, results) of ``spec``'s smoke run, trained once."""
  if spec not in _RUNS:
    from gcjax import train
    workdir = str(tmp_path_factory.mktemp(spec.replace(':', '_')))
    _RUNS[spec] = workdir, train.run(config(spec), workdir)
  return _RUNS[spec]

"""The command line reports bad input as one line and exit status 2.

Every case runs ``python -m gcjax.main`` (or ``gcjax.stats``) as a
subprocess from the repository root, as a user would.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = '--config=configs/pix2pix_gan.py:smoke'


def _run(*args, module='gcjax.main', timeout=300):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'PYTHONPATH': ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')}
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT,
                        env=env, capture_output=True, text=True,
                        timeout=timeout)


def _assert_one_line(proc, *names):
  """Exit 2, one non-empty stderr line naming ``names``, no traceback."""
  lines = [x for x in proc.stderr.splitlines() if x.strip()]
  assert proc.returncode == 2, proc.stderr
  assert len(lines) == 1, proc.stderr
  assert 'Traceback' not in proc.stderr
  for name in names:
    assert name in lines[0], lines[0]
  return lines[0]


def test_wrong_preset():
  line = _assert_one_line(_run('--config=configs/pix2pix_gan.py:smok'),
                          'pix2pix_gan.py', "'smok'", 'smoke', 'paper')
  assert line.startswith('gcjax.main: error:')


def test_wrong_preset_verbose_keeps_traceback():
  proc = _run('--config=configs/pix2pix_gan.py:smok', '--verbose')
  assert proc.returncode != 0 and 'Traceback' in proc.stderr


def test_wrong_type():
  _assert_one_line(_run(SMOKE, '--config.total_steps=abc'),
                   'total_steps', 'abc', 'int')


def test_unknown_key():
  _assert_one_line(_run(SMOKE, '--config.optim.g.lrr=0.1'), 'lrr', '"lr"')


def test_missing_config_file():
  _assert_one_line(_run('--config=configs/nope.py:smoke'), 'configs/nope.py')


def test_missing_dataset_folder(tmp_path):
  _assert_one_line(_run('--config=configs/pix2pix_gan.py:paper',
                        '--config.data.batch_size=8',
                        '--config.data.args.path=/nonexistent/edges2shoes',
                        f'--workdir={tmp_path}'),
                   '/nonexistent/edges2shoes', 'data.args.path')


@pytest.mark.parametrize('name', ['bad.png', 'bad.jpg'])
def test_unreadable_image(tmp_path, name):
  os.makedirs(tmp_path / 'data' / 'train')
  (tmp_path / 'data' / 'train' / name).write_bytes(b'not an image')
  _assert_one_line(_run('--config=configs/pix2pix_gan.py:paper',
                        '--config.data.batch_size=8',
                        f'--config.data.args.path={tmp_path / "data"}',
                        f'--workdir={tmp_path / "run"}'),
                   'cannot read image', name)


def test_checkpoint_of_other_config(tmp_path):
  workdir = f'--workdir={tmp_path}'
  first = _run(SMOKE, workdir, '--config.total_steps=2', '--config.evals={}')
  assert first.returncode == 0, first.stderr[-3000:]
  line = _assert_one_line(_run(SMOKE, workdir, '--config.total_steps=2',
                               '--config.generator.ngf=8'),
                          'Checkpoint', str(tmp_path), '--workdir')
  assert '(4, 4, 1, 8)' in line


def test_batch_not_divisible_by_devices(tmp_path):
  # conftest's 8 fake CPU devices reach the subprocess through XLA_FLAGS.
  _assert_one_line(_run(SMOKE, '--config.data.batch_size=4',
                        f'--workdir={tmp_path}'), 'data.batch_size=4')


def test_composed_preset_checks_options():
  # :smoke,mi=foo composes; the bad mi kind is named with its choices.
  _assert_one_line(_run('--config=configs/pix2pix_vem.py:smoke,mi=foo'),
                   'pix2pix_vem.py', "'foo'", 'vid')


def test_stats_wrong_preset():
  line = _assert_one_line(
      _run('--config=configs/pix2pix_gan.py:smok', module='gcjax.stats'),
      "'smok'")
  assert line.startswith('gcjax.stats: error:')


def test_stats_wrong_key(tmp_path):
  _assert_one_line(_run(SMOKE, '--key=zz', f'--out={tmp_path}/s.npz',
                        module='gcjax.stats'), "'zz'", 'tgt')


@pytest.mark.parametrize('spec,names', [
    ('run:/nonexistent/run', ('run:/nonexistent/run', 'no run folder')),
    ('pretrained:vintagifi', ('pretrained:vintagifi', 'vintagify',
                              'face_dcgan')),
])
def test_bad_init_spec(tmp_path, spec, names):
  _assert_one_line(_run(SMOKE, f'--config.generator.init={spec}',
                        f'--workdir={tmp_path}'), *names)
  assert not os.listdir(tmp_path)   # nothing written for a refused run


def test_unknown_evaluator_type(tmp_path):
  _assert_one_line(_run(SMOKE, '--config.evals.image.type=imag',
                        f'--workdir={tmp_path}'),
                   'config.evals.image', "'imag'", 'image, is, laplacian')

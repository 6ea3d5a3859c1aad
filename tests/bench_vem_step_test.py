"""experiments/bench_vem_step --breakdown at tiny sizes (no timing asserted).

The ``--mi=none`` run also runs PyTorch's step (experiments/
torch_omgd_step.py) in the side interpreter that scripts/setup.sh creates
(``GCJAX_TORCH_PYTHON``, default /tmp/torchvenv/bin/python).
"""

import math
import os

import jax
import pytest

from experiments import bench_vem_step

TORCH_PYTHON = os.environ.get('GCJAX_TORCH_PYTHON',
                              '/tmp/torchvenv/bin/python')


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  out = tmp_path_factory.mktemp('vem') / 'step.md'
  out.write_text('# Old figures\n\n| a | b |\n')
  r = bench_vem_step.main(['--breakdown', '--tiny', '--res=16',
                           f'--batch={jax.device_count()}', '--steps=1',
                           '--torch_python=', f'--out={out}'])
  return r, out.read_text()


@pytest.fixture(scope='module')
def tiny_none_run(tmp_path_factory, tiny_run):
  del tiny_run   # after it: its parts' compiles are cached
  out = tmp_path_factory.mktemp('none') / 'step.md'
  r = bench_vem_step.main(['--breakdown', '--tiny', '--res=16',
                           f'--batch={jax.device_count()}', '--steps=1',
                           '--mi=none', f'--torch_python={TORCH_PYTHON}',
                           f'--out={out}'])
  return r, out.read_text()


def test_parts_cover_the_step(tiny_run):
  r, _ = tiny_run
  assert not r['nonfinite'], r['nonfinite']
  got = {(x['name'].split(':')[0], x['kind']): x['count'] for x in r['rows']}
  assert got == {
      ('teacher (wide)', 'fwd'): 0, ('teacher (wide)', 'fwd+bwd'): 1,
      ('teacher (deep)', 'fwd'): 0, ('teacher (deep)', 'fwd+bwd'): 1,
      ('student', 'fwd'): 0, ('student', 'fwd+bwd'): 1,
      # real + 2 fakes in the D update, one G loss per teacher.
      ('discriminator', 'fwd'): 0,
      ('discriminator', 'fwd+bwd to params'): 3,
      ('discriminator', 'fwd+bwd to input'): 2,
      ('VGG16', 'fwd'): 2, ('VGG16', 'fwd+bwd'): 1,
      ('SSIM + L1 + TV losses', 'fwd+bwd'): 1,
      ('energy net', 'update'): 1, ('MI student term', 'fwd+bwd'): 1,
      ('Adam updates (5 nets)', 'update'): 1}
  assert all(x['s'] > 0 for x in r['rows'])
  assert r['sum_s'] == pytest.approx(
      sum(x['count'] * x['s'] for x in r['rows']))
  assert r['step_s'] > 0 and len(r['step_times']) == 1


def test_plain_omgd_step_against_measured_pytorch(tiny_none_run):
  r, text = tiny_none_run
  assert not r['nonfinite'], r['nonfinite']
  kinds = [(x['name'], x['kind']) for x in r['rows']]
  assert ('discriminator', 'fwd+bwd to params') in kinds
  assert ('VGG16', 'fwd+bwd') in kinds
  assert not any('energy' in n or 'MI' in n for n, _ in kinds), kinds
  # PyTorch's step: `torch_omgd_step.py --tiny --steps=1` at the same shapes.
  t = r['torch']
  assert (t['res'], t['batch'], t['tiny']) == (16, jax.device_count(), True)
  assert (t['steps'], t['threads']) == (1, 2) and t['peak_rss_mb'] > 0
  assert len(t['step_s']) == 1 and t['step_s_median'] == t['step_s'][0] > 0
  m = t['metrics']
  assert all(math.isfinite(v) for v in m.values()), m
  # Both teachers trained (GAN + L1), one D, and the student's loss is the
  # config's weighted sum of its terms against each of the two teachers.
  assert {'d/loss', 't0/loss', 't1/loss', 's/grad_norm'} <= set(m)
  w = dict(ssim=10.0, l1=10.0, style=1e4, perceptual=10.0)
  want = sum(wt * m[f's/{k}{i}'] for k, wt in w.items() for i in (0, 1))
  want += 1e-5 * m['s/tv'] + 10.0 * m['s/feature']
  assert m['s/loss'] == pytest.approx(want, rel=1e-5)
  assert m['s/feature'] > 0 and m['s/style0'] > 0
  assert text.startswith('# OMGD pix2pix train step, broken down')
  assert '`pix2pix_omgd:paper,mi=none`' in text and 'Langevin' not in text
  ratio = r['step_s'] / t['step_s_median']
  assert 'measured in this sitting' in text
  assert f'this OMGD step: **{ratio:.2f}x**' in text
  assert 'No PyTorch interpreter' not in text


def test_constant_only_as_labelled_fallback(tiny_none_run):
  r, _ = tiny_none_run
  paper = dict(r, tiny=False, res=256, batch=4, torch=None,
               torch_python='/nowhere/python')
  text = bench_vem_step.breakdown_markdown(paper)
  want = r['step_s'] / bench_vem_step.TORCH_STEP_S
  assert "No PyTorch interpreter at '/nowhere/python'" in text
  assert 'another machine' in text and f': {want:.2f}x.' in text
  assert 'measured in this sitting' not in text


def test_markdown_keeps_older_sections(tiny_run):
  r, text = tiny_run
  assert text.startswith('# OMGD + VEM pix2pix train step, broken down')
  assert text.count('| energy net: Langevin K=') == 1
  assert '**sum of parts**' in text and 'gap ' in text
  assert 'PyTorch' not in text           # only at the paper's shapes
  new, older = text.split(bench_vem_step.OLDER)
  assert '## Earlier figures' in older and '### Old figures' in older
  assert '| a | b |' in older and '| a | b |' not in new


def test_rewrite_keeps_older_part_once(tmp_path):
  path = str(tmp_path / 'x.md')
  for title in ('first', 'second', 'third'):
    bench_vem_step.write_keeping_older(path, f'# {title}\n')
  with open(path) as f:
    text = f.read()
  assert text == (f'# third\n\n{bench_vem_step.OLDER}\n\n## Earlier figures'
                  '\n\n### first\n')

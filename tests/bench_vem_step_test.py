"""experiments/bench_vem_step --breakdown at tiny sizes (no timing asserted)."""

import jax
import pytest

from experiments import bench_vem_step


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  out = tmp_path_factory.mktemp('vem') / 'step.md'
  out.write_text('# Old figures\n\n| a | b |\n')
  r = bench_vem_step.main(['--breakdown', '--tiny', '--res=16',
                           f'--batch={jax.device_count()}', '--steps=1',
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

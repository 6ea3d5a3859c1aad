"""experiments/bench_vs_pytorch at tiny sizes: every generator family runs
in both frameworks on converted weights and computes the same function.

Needs the PyTorch side interpreter that scripts/setup.sh creates
(``GCJAX_TORCH_PYTHON``, default /tmp/torchvenv/bin/python). No timing is
asserted.
"""

import os

from experiments import bench_vs_pytorch as bvp

TORCH_PYTHON = os.environ.get('GCJAX_TORCH_PYTHON',
                              '/tmp/torchvenv/bin/python')


def test_tiny_run_covers_every_generator_and_matches(tmp_path):
  out = tmp_path / 'bench.md'
  table = bvp.main(['--tiny', '--reps=1', '--batches=1,2',
                    f'--torch_python={TORCH_PYTHON}', f'--out={out}'])
  assert [(r['row'], r['batch']) for r in table] == [
      (row, b) for row in bvp.ROWS for b in (1, 2)]
  for r in table:
    # Same function on shared weights (outputs are O(1)).
    assert r['diff'] <= 1e-5 * (1 + r['scale']), r
    assert r['scale'] > 1e-2, r   # not a trivially zero output
    assert r['torch_ms'] > 0 and r['jax_ms'] > 0
  text = out.read_text()
  for title in bvp.TITLES.values():
    assert text.count(f'| {title} |') == 2

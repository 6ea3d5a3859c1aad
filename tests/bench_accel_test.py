"""experiments/bench_accel at tiny sizes on CPU (no timing asserted)."""

import jax

from experiments import bench_accel


def test_peak_table_and_fallback():
  assert bench_accel.peak_flops('NVIDIA H200', 'bfloat16') == (
      989e12, 'table (h200)')
  assert bench_accel.peak_flops('TPU v5 lite', 'float32')[0] == 197e12 / 4


def test_tiny_run_both_dtypes(tmp_path):
  out = tmp_path / 'accel.md'
  n = jax.device_count()
  # float32 only: the bfloat16 step compiles for ~4 min on a loaded 2-core
  # CPU; tests/precision_test.py trains a bfloat16 run.
  rows = bench_accel.main(['--tiny', '--res=16', f'--batches={n},{2 * n}',
                           '--dtypes=float32', '--steps=1', f'--out={out}'])
  assert [(r['dtype'], r['batch']) for r in rows] == [
      ('float32', n), ('float32', 2 * n)]
  for r in rows:
    assert not r['nonfinite'] and r['flops'] > 0 and 0 < r['mfu'] < 1, r
    assert r['peak_src'] == 'measured f32 matmul'
    assert r['img_s'] == r['batch'] / r['step_s']
  # Twice the batch is about twice the work (the weight updates are not).
  assert 1.3 < rows[1]['flops'] / rows[0]['flops'] < 2.1, rows
  text = out.read_text()
  assert text.count('| float32 |') == 2
  assert text.count('| * |') == 1   # the best batch of the dtype

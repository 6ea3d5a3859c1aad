"""gcjax.hostmem: freed large blocks stay with the process."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PROBE = '''
import resource, sys
import numpy as np
from gcjax import hostmem
print(hostmem.keep_freed_memory() if sys.argv[1] == '1' else False)
a = np.ones(10 << 20); del a       # 80 MB, allocated and freed once
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
  a = np.ones(10 << 20); del a
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5)
'''


def _faults(apply: bool, env=None) -> tuple[str, float]:
  out = subprocess.run(
      [sys.executable, '-c', _PROBE, '1' if apply else '0'],
      capture_output=True, text=True, check=True, cwd=ROOT,
      env={**os.environ, 'PYTHONPATH': ROOT, **(env or {})}).stdout.split()
  return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='a glibc policy')
def test_freed_blocks_are_reused_without_page_faults():
  applied, kept = _faults(True)
  assert applied == 'True'
  assert kept < 50                    # the same pages, reused
  _, default = _faults(False)
  assert default > 10 * max(kept, 10)  # glibc: munmap + fresh mmap
  # The opt-out leaves glibc alone.
  applied, opted_out = _faults(True, {'GCJAX_KEEP_HOST_MEMORY': '0'})
  assert applied == 'False' and opted_out > 10 * max(kept, 10)

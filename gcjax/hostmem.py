"""Host memory policy for XLA:CPU: keep freed buffers for the next call.

XLA:CPU allocates each call's temporary buffers (one block of tens to
hundreds of MB for a 256x256 generator) with ``malloc`` and frees them at
the end of the call. glibc serves such sizes with a fresh ``mmap`` and
hands them back with ``munmap``, so every call touches new pages: the
pix2pix U-Net 64 took ~11,700 page faults per batch-1 call (~25k at batch
4), at ~2 us each on this VM about a fifth of its time, all of it in the
kernel (experiments/results/bench_vs_pytorch.md, "host memory").

:func:`keep_freed_memory` sets glibc's ``M_MMAP_MAX`` to 0 (large blocks
come from the heap) and ``M_TRIM_THRESHOLD`` to its maximum (freed heap
memory stays with the process), so later calls reuse warm pages; the
process's resident memory stays at its peak instead of shrinking between
calls. gcjax's command-line programs call it on start-up; set
``GCJAX_KEEP_HOST_MEMORY=0`` to leave the allocator alone. Blocks over
64 MB requested from a thread other than the main one still come from
``mmap`` (glibc's per-thread arenas cannot hold them); for those,
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in the environment makes the
kernel fault them in 2 MB pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
ENV = 'GCJAX_KEEP_HOST_MEMORY'


def keep_freed_memory() -> bool:
  """Applies the policy above; True if glibc accepted it.

  A no-op (False) off Linux, with a C library without ``mallopt`` (musl),
  or when the environment sets ``GCJAX_KEEP_HOST_MEMORY=0``.
  """
  if os.environ.get(ENV, '1') == '0' or not sys.platform.startswith('linux'):
    return False
  try:
    mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  return bool(mallopt(M_MMAP_MAX, 0)) and bool(
      mallopt(M_TRIM_THRESHOLD, 2**31 - 1))

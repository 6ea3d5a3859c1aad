"""Test-wide setup: 8 fake CPU devices, before anything imports jax."""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
# Persistent XLA compilation cache (also inherited by subprocess tests): the
# suite is dominated by compiling small train steps on 2 CPU cores.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.expanduser(
    '~/.cache/gcjax/jax_compilation_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')

import jax  # noqa: E402

# Classic threefry: XLA:CPU compiles it far faster (see configs/common.py base).
jax.config.update('jax_threefry_partitionable', False)

import pytest  # noqa: E402


@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory):
  """``smoke_run(spec) -> (workdir, results)``: see tests/smoke_runs.py."""
  import smoke_runs
  return lambda spec: smoke_runs.run(spec, tmp_path_factory)

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

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory):
  """``smoke_run(spec) -> (workdir, results)``: see tests/smoke_runs.py."""
  import smoke_runs
  return lambda spec: smoke_runs.run(spec, tmp_path_factory)


@pytest.fixture(scope='session')
def inception():
  """``inception(images [N, H, W, C] in [-1, 1]) -> [N, 2048]`` float64 FID
  features of the pretrained Inception over all devices, in batches of 8.

  The variables are loaded once for the session (host numpy) and placed
  per call; the network's compile is shared with every other
  ``fid.inception_fn`` of the process (the FID evaluator, ``stats.compute``):
  tests that use it carry ``smoke_runs.group('inception')`` so that
  ``pytest -n`` compiles it on one worker only.
  """
  from gcjax import metric_weights
  from gcjax.metrics import fid
  variables = metric_weights.load_inception_params()

  def features(images):
    fn = fid.inception_fn(variables)
    batch = fid.device_multiple(8)
    return np.concatenate(list(fid.extract_features(
        fn, [np.asarray(images, np.float32)], batch))).astype(np.float64)

  return features

"""What the tests that run ``python -m gcjax.main`` as subprocesses share.

* ``subprocess_env``: fake CPU devices and the parent's persistent XLA
  compilation cache (``JAX_COMPILATION_CACHE_DIR``, set by conftest), so a
  child compiles only what no earlier run of the suite compiled;
* ``no_evals_config``: a config file of a smoke preset without evaluators,
  for runs that compare parameters only;
* ``final_params``: the latest checkpoint of any topology, on this host.
"""

import os
import socket

import jax
import orbax.checkpoint as ocp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def subprocess_env(devices: int) -> dict[str, str]:
  """Env for a gcjax subprocess: ``devices`` fake CPU devices, this
  process's compile cache (JAX reads ``JAX_COMPILATION_CACHE_DIR``)."""
  env = dict(os.environ)
  assert env.get('JAX_COMPILATION_CACHE_DIR'), 'conftest sets the cache'
  env.update({
      'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
      'JAX_PLATFORMS': 'cpu',
      'PYTHONPATH': ROOT + os.pathsep + env.get('PYTHONPATH', ''),
  })
  return env


def no_evals_config(directory, module: str, preset: str = 'smoke') -> str:
  """Writes ``directory/<module>_noevals.py``: ``configs.<module>``'s
  ``preset`` with ``evals`` emptied; returns its path for ``--config``."""
  path = os.path.join(str(directory), f'{module}_noevals.py')
  with open(path, 'w') as f:
    f.write(
        'import ml_collections\n\n'
        f'from configs import {module}\n\n\n'
        'def get_config():\n'
        f'  c = {module}.get_config({preset!r})\n'
        '  c.evals = ml_collections.ConfigDict()\n'
        '  return c\n')
  return path


def final_params(workdir: str):
  """(step, state) of the latest checkpoint, as numpy on this host.

  Works for checkpoints written by any topology (e.g. two processes).
  """
  from etils import epath
  ckdir = os.path.join(workdir, 'checkpoints')
  step = max(int(d) for d in os.listdir(ckdir) if d.isdigit())
  path = epath.Path(ckdir) / str(step) / 'state'
  tree = ocp.PyTreeCheckpointHandler().metadata(path).tree
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=dev), tree)
  return step, jax.device_get(
      ocp.StandardCheckpointer().restore(path, target))

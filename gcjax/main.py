"""Command line: ``python -m gcjax.main --config=configs/NAME.py[:preset]``.

Flags:
  --config: an ml_collections config file, optionally ``:preset`` (``smoke``,
    ``paper``, ...). Override any field with ``--config.a.b=value``; the config
    is locked, so a misspelled key is an error that names it.
  --workdir: where checkpoints, logs, samples and results go (default
    ``runs/<config-name>/<timestamp>``). Re-running with the same workdir
    resumes from its latest checkpoint.
  --multihost: call ``jax.distributed.initialize()`` first (TPU pods,
    multi-GPU clusters; coordinator/env taken from the environment).
  --coordinator_address, --num_processes, --process_id: passed to
    ``jax.distributed.initialize()`` where the environment cannot tell them
    (e.g. several CPU processes on one machine); any of them implies
    --multihost.
  --peer_timeout: seconds without a heartbeat from another process after
    which a multi-process run stops with a line naming the lost process
    (exit 75; rerun the same command everywhere to resume). JAX's own
    heartbeat timeout is set to three times this plus 10 s, as a
    backstop. If process 0 (the coordinator) dies, JAX itself ends the
    others at once (SIGABRT, "the leader task was preempted/died").
  --verbose: print the traceback of bad-input errors too. Without it, bad
    input (a missing file or preset, a value of the wrong type, a checkpoint
    of another config) is one line ``gcjax.main: error: ...`` and exit
    status 2; internal errors always show their traceback.
"""


from absl import flags, logging
from ml_collections import config_flags

from gcjax import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, optionally with :preset.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.')
_MULTIHOST = flags.DEFINE_bool(
    'multihost', False, 'Initialize jax.distributed before anything else.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0 for jax.distributed (default: from the env).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Number of processes (default: from the env).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process, 0-based (default: from the env).')
_PEER_TIMEOUT = flags.DEFINE_float(
    'peer_timeout', 60.0, 'Multi-process runs: seconds without a heartbeat '
    'after which another process counts as lost and this one stops.',
    lower_bound=1.0)


def main(argv):
  del argv
  from gcjax import hostmem
  hostmem.keep_freed_memory()   # before XLA allocates anything
  if not flags.FLAGS['verbosity'].present:
    # Orbax logs every file it writes at INFO; keep the console readable.
    logging.set_verbosity(logging.WARNING)
  import jax
  dist = {k: v for k, v in (('coordinator_address', _COORDINATOR.value),
                             ('num_processes', _NUM_PROCESSES.value),
                             ('process_id', _PROCESS_ID.value))
          if v is not None}
  if _MULTIHOST.value or dist:
    jax.distributed.initialize(
        **dist, heartbeat_timeout_seconds=int(3 * _PEER_TIMEOUT.value + 10))
  from gcjax import peers, train
  config = _CONFIG.value
  workdir = _WORKDIR.value or train.default_workdir(
      config_flags.get_config_filename(flags.FLAGS['config']))
  if jax.process_index() == 0:
    print(f'gcjax: workdir {workdir}', flush=True)
  logging.info('Config:\n%s', config)
  watchdog = peers.Watchdog(
      _PEER_TIMEOUT.value, hint=f' in {workdir}/checkpoints').start()
  try:
    train.run(config, workdir)
  except jax.errors.JaxRuntimeError:
    watchdog.settle()   # a lost peer ends the process here, with one line
    raise
  watchdog.stop()
  if jax.process_index() == 0:
    print(f'gcjax: results in {workdir}/results.md')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  cli.run(main, 'gcjax.main')

"""Every config's smoke run, once: the record, its exports, exact resume.

Each smoke preset runs once (``smoke_run``, see ``tests/smoke_runs.py``;
the tests of one spec share an xdist group, so one worker runs it).
On that run:

* the results equal the record ``tests/fixtures/smoke_results.json``
  (made by ``python scripts/smoke_results.py
  --out=tests/fixtures/smoke_results.json`` before the plug-in refactor);
  a change that moves any loss, metric, parameter or MAC count of any
  method shows up here. Remake the record only for a change that is meant
  to move the numbers, and say why in the commit;
* every exported network, read back by ``teachers.load('run:<workdir>:
  <net>')`` from the export card alone, reproduces the run to 1e-6: a
  generator gives the run's own predictions on an evaluation batch, any
  other network (discriminators, ...) the finished network's outputs;
* for one config per kind of state (GAN, OMGD + VEM critic, OMGD + CRD
  queue and pointer, CycleGAN image pools, kd's WGAN-GP critic loop), a run
  stopped after one step and resumed ends with bitwise the state of the
  uninterrupted run.
"""

import json
import os

import chex
import jax
import ml_collections
import numpy as np
import smoke_runs
from smoke_runs import per_spec, smoke_results

from gcjax import checkpoint as ckpt_lib
from gcjax import methods, sharding, teachers, train
from gcjax.data import pipeline

ROOT = smoke_runs.ROOT
with open(os.path.join(ROOT, 'tests', 'fixtures', 'smoke_results.json')) as f:
  RECORD = json.load(f)
_config = smoke_runs.config


def _restored(config, workdir):
  """(method, final state, frozen, test arrays, mesh) of a finished run."""
  mesh = sharding.create_mesh()
  _, test_arrays, sample_batch = train._load_data(config, mesh)
  method = methods.get(config.method).make(config, sample_batch)
  abstract = jax.eval_shape(method.init, jax.random.key(0))
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'))
  try:
    state, _ = ck.restore(ck.latest_step(), abstract,
                          sharding.replicate_tree(abstract, mesh))
  finally:
    ck.close()
  frozen = jax.device_put(method.frozen, sharding.replicated(mesh))
  return method, state, frozen, test_arrays, mesh


def _checkpoint(workdir):
  import orbax.checkpoint as ocp
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'))
  step = ck.latest_step()
  ck.close()
  return step, ocp.StandardCheckpointer().restore(
      os.path.join(workdir, 'checkpoints', str(step), 'state'))


def test_record_covers_every_smoke_spec():
  assert sorted(RECORD) == sorted(smoke_results.SMOKE)


@per_spec(smoke_results.SMOKE)
def test_smoke_results_equal_the_record(spec, smoke_run):
  _, res = smoke_run(spec)
  got = smoke_results.strip_times(json.loads(json.dumps(res, default=float)))
  diffs = smoke_results.compare(RECORD[spec], got)
  assert not diffs, f'{spec}:\n' + '\n'.join(diffs)


def _input_key(method, batch):
  """The batch entry a method's generators read: its first sample-grid
  column that is a batch key ('src', the CycleGAN source domain), else
  the latents 'z'."""
  return next((k for k in method.sample_rows if k in batch), 'z')


@per_spec(smoke_results.SMOKE)
def test_exports_reproduce_the_run(spec, smoke_run):
  workdir, _ = smoke_run(spec)
  config = _config(spec)
  method, state, frozen, arrays, mesh = _restored(config, workdir)
  with open(os.path.join(workdir, 'export', 'card.json')) as f:
    assert sorted(json.load(f)['networks']) == sorted(method.export)
  rows, _ = next(pipeline.eval_batches(arrays, config.eval_batch_size))
  batch = {k: np.asarray(v) for k, v in
           method.eval_inputs(rows, jax.random.key(5)).items()}
  gb = sharding.global_from_host(batch, mesh)
  finished = method.finalize(state, frozen)
  checked = 0
  for name in method.export:
    module, variables = teachers.load(f'run:{workdir}:{name}')
    assert type(module) is type(finished[name].module), name
    if name in method.predict:
      # The reloaded network runs as the run's predict functions do: jitted
      # over the evaluation batch sharded across the 8 devices (on one host
      # device XLA sums in another order: ~1e-6 apart at 32x32).
      want = method.predict[name](state, gb, frozen)
      got = jax.jit(lambda v, x, m=module: m.apply(v, x, train=False)[0],
                    out_shardings=sharding.replicated(mesh))(
                        variables, gb[_input_key(method, batch)])
    else:
      net = finished[name]
      x = np.asarray(jax.random.uniform(
          jax.random.key(6), (4, *net.input_shape), minval=-1.0))
      want = net.module.apply(net.variables, x, train=False)[0]
      got = module.apply(variables, x, train=False)[0]
    want, got = np.asarray(want), np.asarray(got)
    assert want.shape == got.shape and np.std(want) > 0, name
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=name)
    checked += 1
  assert checked == len(method.export) > 0


# Resume: one config per kind of state the checkpoint must carry.
RESUME = {
    'pix2pix_gan:smoke': {},                       # G, D, optimizers
    'pix2pix_vem:smoke': {},                       # + VEM critic
    'pix2pix_crd:smoke': {},                       # + CRD queue, pointer
    'cyclegan_gan:smoke': {},                      # + CycleGAN image pools
    'dcgan_kd:smoke': {'loss.kind': 'joint',       # kd's WGAN-GP critic loop
                       'loss.adversarial': 'wgan-gp', 'loss.n_critic': 2,
                       'disc.norm': 'layer'},
}


@per_spec(RESUME)
def test_resume_equals_uninterrupted(spec, smoke_run, tmp_path):
  overrides = RESUME[spec]
  if overrides:     # not a smoke preset as recorded: its own full run
    full_dir = str(tmp_path / 'full')
    c = _config(spec, evals=ml_collections.ConfigDict(), **overrides)
    train.run(c, full_dir)
  else:
    full_dir, _ = smoke_run(spec)
  step, full = _checkpoint(full_dir)
  # The same config stopped after each step ("preempted"), rerun to the end;
  # the interrupted runs skip evaluation, which reads no training state.
  d = str(tmp_path / 'resumed')
  c = _config(spec, evals=ml_collections.ConfigDict(), run_steps=1, **overrides)
  out = train.run(c, d)
  assert out['_run'] == {'stopped_at': 1}
  c = _config(spec, evals=ml_collections.ConfigDict(), **overrides)
  res = train.run(c, d)
  assert res['_run']['resumed_from'] == 1
  got_step, resumed = _checkpoint(d)
  assert got_step == step
  chex.assert_trees_all_equal(full, resumed)

"""The trainer's config section shared by every experiment config file.

Experiment files in ``configs/`` start from :func:`base` and set every
method-specific default themselves.
"""

import ml_collections


def base() -> ml_collections.ConfigDict:
  """Trainer fields: run length, logging, checkpoints, guard, evals."""
  c = ml_collections.ConfigDict()
  c.method = ''
  c.seed = 0
  # JAX's partitionable threefry generates sharded random arrays without
  # communication (good on pods) but XLA:CPU compiles it ~50x slower; the
  # classic lowering is the default here. Same bits on any device count
  # either way, but the two settings give different random streams.
  c.threefry_partitionable = False
  c.total_steps = 1000
  # > 0: leave after this many new steps (checkpointing first), as if
  # preempted; rerun the same command to continue (time-sliced schedulers).
  c.run_steps = 0
  c.log_every = 50
  c.ckpt_every = 500
  c.keep_ckpts = 2
  c.sample_every = 0          # 0: sample grid only at the end.
  c.n_samples = 8             # rows in the sample grid.
  c.eval_batch_size = 64
  c.guard = ml_collections.ConfigDict({'policy': 'stop'})  # or 'skip'
  # nan_at_step=K > 0 poisons step K's inputs with NaN (tests the guard).
  c.debug = ml_collections.ConfigDict({'nan_at_step': 0})
  c.evals = ml_collections.ConfigDict()
  return c


def adam(lr=2e-4, b1=0.5, b2=0.999, decay='linear', decay_start=0):
  """An optimizer section matching ``methods.base.make_adam``'s arguments."""
  return ml_collections.ConfigDict(
      {'lr': lr, 'b1': b1, 'b2': b2, 'decay': decay,
       'decay_start': decay_start})


def image_eval(target=('tgt',), every_steps: int = 0) -> dict:
  """The ``image`` evaluator: L1/PSNR/SSIM of every predict against each
  target (a batch key: the data; a predict name: ``agree_*``)."""
  return {'type': 'image', 'every_steps': every_steps, 'pred': (),
          'target': tuple(target), 'limit': 0}


def cost_eval(latency_batch: int, latency_iters: int = 10,
              every_steps: int = 0) -> dict:
  """The ``cost`` evaluator: params, MACs, latency at batch 1 and N."""
  return {'type': 'cost', 'every_steps': every_steps, 'pred': (),
          'latency_batch': latency_batch, 'latency_iters': latency_iters}


def no_data(batch_size: int, eval_rows: int) -> ml_collections.ConfigDict:
  """No dataset (data-free methods): ``batch_size`` rows of inputs per step
  are made by the method; evaluations run over ``eval_rows`` rows."""
  return ml_collections.ConfigDict({
      'name': '', 'train_split': '', 'test_split': '',
      'batch_size': batch_size, 'seed': 0, 'flip': False, 'jitter': 0,
      'args': {}, 'train_limit': 0, 'test_limit': eval_rows})


def edges2fashion(resolution=32, channels=1, batch_size=16, train_limit=0,
                  test_limit=0):
  """The embedded paired dataset (Fashion-MNIST shoes + Canny edges)."""
  return ml_collections.ConfigDict({
      'name': 'edges2fashion', 'train_split': 'train', 'test_split': 'test',
      'batch_size': batch_size, 'seed': 0, 'flip': False, 'jitter': 0,
      'args': {'resolution': resolution, 'channels': channels,
               'classes': (5, 7, 9)},
      'train_limit': train_limit, 'test_limit': test_limit})


def sibling(name: str, here: str):
  """Imports ``configs/<name>.py`` next to the config file ``here``."""
  import importlib.util
  import os
  path = os.path.join(os.path.dirname(os.path.abspath(here)), f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'gcjax_config_{name}', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def mi(kind: str) -> ml_collections.ConfigDict:
  """The MI add-on section (``objectives.mi.make_mi`` keywords).

  VEM defaults are the paper's: K=10 Langevin steps, step size eta=100,
  noise sigma=0.005, EBM Adam lr 1e-4 with betas (0, 0.999), lambda_MI=0.2
  (Table 5's best); alpha=0.1 weights the energy-magnitude regularizer.
  ``positive``: 'target' (real image, the paper's choice on paired data) or
  'teacher' (the teacher's output, used for unpaired data).
  """
  return ml_collections.ConfigDict({
      'kind': kind, 'positive': 'target', 'lambda_mi': 0.2,
      'lr': 1e-4, 'b1': 0.0, 'b2': 0.999, 'decay': 'none',
      # The energy net sees (t, s) avg-pooled 4x (as the authors' tutorial
      # code pools). With ch 16 the default VEM step measured 1.32x the plain
      # OMGD step on a 2-core CPU (1.96x with ch 32; bench_vem_step.py).
      'ebm_ch': 16, 'ebm_blocks': 4, 'ebm_pool': 4,
      'ebm_spectral_norm': True, 'n_steps': 10, 'step_size': 100.0,
      'noise_std': 0.005, 'alpha': 0.1, 'clip': (-1.0, 1.0),
      'grad_clip': 0.0,
      'vid_hidden': 32, 'vid_init_var': 1.0,
      'crd_dim': 128, 'crd_hidden': 32, 'crd_queue': 4096,
      'crd_temperature': 0.07})


def smoke_mi(section: ml_collections.ConfigDict) -> None:
  """Shrinks an MI section for seconds-long test runs."""
  section.update({'ebm_ch': 4, 'ebm_blocks': 1, 'n_steps': 3,
                  'vid_hidden': 4, 'crd_dim': 8, 'crd_hidden': 4,
                  'crd_queue': 16})

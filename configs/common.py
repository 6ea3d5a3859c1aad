"""Config pieces shared by the experiment config files, and ``parse_arg``.

Experiment files in ``configs/`` start from :func:`base` and set every
method-specific default themselves. They import shared pieces as modules
(``from configs import common, pix2pix_omgd``) and read their ``:arg`` with
:func:`parse_arg`, so presets and options compose on the command line:

  python -m gcjax.main --config=configs/pix2pix_vem.py:smoke,mi=vid

Library code (``gcjax/``) never imports this package.
"""

import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from gcjax import errors

# ``mi.kind`` values (``gcjax.objectives.mi.make_mi``).
MI_KINDS = ('none', 'vem', 'vid', 'crd')
_TRUE = ('true', 'yes', '1')
_FALSE = ('false', 'no', '0', '')


def _name(source: str) -> str:
  """``configs/x.py`` for the config file ``source`` (its ``__file__``)."""
  if not source:
    return 'config'
  path = os.path.abspath(source)
  return f'{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}'


def _convert(value: str, default: Any, where: str, key: str) -> Any:
  """``value`` as the type of ``default`` (a UserError if it is not one)."""
  try:
    if isinstance(default, bool):
      if value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
      raise ValueError(value)
    if isinstance(default, int):
      return int(value)
    if isinstance(default, float):
      return float(value)
  except ValueError:
    raise errors.UserError(
        f'{where}: {key}={value!r} is not a {type(default).__name__} '
        f'(default {key}={default!r})') from None
  return value


def parse_arg(arg: str | None, *, presets: Sequence[str] = ('default',),
              source: str = '', **defaults) -> ml_collections.ConfigDict:
  """Reads a config file's ``:arg`` (big_vision's ``bvcc.parse_arg``).

  ``arg`` is comma-separated words. ``key=value`` sets an option named in
  ``defaults`` (the value is converted to the default's type; booleans
  accept true/false/yes/no/1/0). A bare word is a preset from ``presets``
  or a boolean option set to True. At most one preset; none means
  ``presets[0]`` (``'default'``). Example, in a config file::

    PRESETS = ('default', 'smoke', 'paper')

    def get_config(arg=None):
      arg = common.parse_arg(arg, presets=PRESETS, source=__file__,
                             mi='none')
      ...  # arg.preset in PRESETS, arg.mi a str

  ``--config=configs/pix2pix_vem.py:smoke,mi=vid`` then gives
  ``arg.preset == 'smoke'`` and ``arg.mi == 'vid'``.

  Args:
    arg: the string after ``:`` in ``--config=file.py:arg``; None or ''
      for the default preset.
    presets: the file's preset names; the first is the default.
    source: the config file (``__file__``), named in errors.
    **defaults: option names and their default values (bool, int, float or
      str).

  Returns:
    A ConfigDict with ``preset`` and every option in ``defaults``.

  Raises:
    errors.UserError: an unknown word or key, two presets, or a value that
      does not convert; the message names the config file, the word and
      the known presets and options.
  """
  where = _name(source) + ':' + (arg or '')
  known = f'presets: {", ".join(presets)}'
  if defaults:
    known += '; options: ' + ', '.join(
        f'{k}=<{type(v).__name__}>' for k, v in defaults.items())
  result = ml_collections.ConfigDict(
      {'preset': presets[0], **defaults}, type_safe=False)
  chosen = None
  for word in (arg or '').split(','):
    word = word.strip()
    if not word:
      continue
    key, eq, value = word.partition('=')
    key = key.strip()
    if not eq:
      if key in presets:
        if chosen is not None:
          raise errors.UserError(
              f'{where}: presets {chosen!r} and {key!r} do not combine; '
              f'pick one ({known})')
        chosen = result.preset = key
        continue
      if isinstance(defaults.get(key), bool):
        result[key] = True
        continue
      raise errors.UserError(f'{where}: unknown preset {key!r} ({known})')
    if key not in defaults:
      raise errors.UserError(f'{where}: unknown option {key!r} ({known})')
    result[key] = _convert(value.strip(), defaults[key], where, key)
  return result


def check_choice(arg: ml_collections.ConfigDict, key: str,
                 choices: Sequence[str], source: str) -> None:
  """Raises a UserError unless ``arg[key]`` is one of ``choices``."""
  if arg[key] not in choices:
    raise errors.UserError(
        f'{_name(source)}: {key}={arg[key]!r} is not one of '
        f'{", ".join(choices)}')


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
  # Activations and matmuls of the trained networks (gcjax.precision):
  # 'float32' or 'bfloat16' (params, optimizer state, norm statistics and
  # losses stay float32).
  c.compute_dtype = 'float32'
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


def input_options() -> dict:
  """Input-pipeline keys every ``data`` section carries (README "Streaming
  input"): ``streaming`` 'auto' | 'on' | 'off' ('auto' streams a train split
  that would take more than ``max_memory_gb`` GiB decoded); grain
  ``workers`` decoding per stream (0: threads of the trainer process);
  ``on_bad_example`` 'error' | 'skip' for undecodable records."""
  return {'streaming': 'auto', 'max_memory_gb': 8.0, 'workers': 2,
          'on_bad_example': 'error'}


def no_data(batch_size: int, eval_rows: int) -> ml_collections.ConfigDict:
  """No dataset (data-free methods): ``batch_size`` rows of inputs per step
  are made by the method; evaluations run over ``eval_rows`` rows."""
  return ml_collections.ConfigDict({
      'name': '', 'train_split': '', 'test_split': '',
      'batch_size': batch_size, 'seed': 0, 'flip': False, 'jitter': 0,
      'args': {}, 'train_limit': 0, 'test_limit': eval_rows,
      **input_options()})


def edges2fashion(resolution=32, channels=1, batch_size=16, train_limit=0,
                  test_limit=0):
  """The embedded paired dataset (Fashion-MNIST shoes + Canny edges)."""
  return ml_collections.ConfigDict({
      'name': 'edges2fashion', 'train_split': 'train', 'test_split': 'test',
      'batch_size': batch_size, 'seed': 0, 'flip': False, 'jitter': 0,
      'args': {'resolution': resolution, 'channels': channels,
               'classes': (5, 7, 9)},
      'train_limit': train_limit, 'test_limit': test_limit,
      **input_options()})


def mi(kind: str) -> ml_collections.ConfigDict:
  """The MI add-on section (``objectives.mi.make_mi`` keywords).

  VEM defaults are the authors': their energy net (``ebm_arch='vem'``,
  base width C0 = ``ebm_ch`` = 64 as for Pix2Pix, 7 residual blocks; the
  CycleGAN configs use 16), K=10 Langevin steps, step size eta=100, noise
  sigma=0.005, the chain clipped to [-1, 1] once at the end, alpha=0.05
  (their scripts' ``l2_coeff``), EBM Adam lr 1e-4 with betas (0, 0.999),
  lambda_MI=0.2 (Table 5's best). ``ebm_arch='compact'`` is gcjax's earlier
  net (``ebm_pool``, ``ebm_spectral_norm`` apply to it only).
  ``positive``: 'target' (real image, the paper's choice on paired data) or
  'teacher' (the teacher's output, used for unpaired data).
  """
  return ml_collections.ConfigDict({
      'kind': kind, 'positive': 'target', 'lambda_mi': 0.2,
      'lr': 1e-4, 'b1': 0.0, 'b2': 0.999, 'decay': 'none',
      'ebm_arch': 'vem', 'ebm_ch': 64, 'ebm_blocks': 7, 'ebm_pool': 4,
      'ebm_spectral_norm': True, 'n_steps': 10, 'step_size': 100.0,
      'noise_std': 0.005, 'alpha': 0.05, 'clip': (-1.0, 1.0),
      'clip_at': 'end', 'grad_clip': 0.0,
      'vid_hidden': 32, 'vid_init_var': 1.0,
      'crd_dim': 128, 'crd_hidden': 32, 'crd_queue': 4096,
      'crd_temperature': 0.07})


def ebm_probe_eval(target: str = 'tgt', limit: int = 0) -> dict:
  """The ``ebm_probe`` evaluator (VEM): held-out shuffled-pair and
  Langevin-negative energy gaps of the student output against ``target``."""
  return {'type': 'ebm_probe', 'every_steps': 0, 'net': 'ebm',
          'pred': 'student', 'target': target, 'limit': limit}


def edges2faces(batch_size=16, n_train=8000, n_test=1000, train_limit=0,
                test_limit=0):
  """The offline RGB paired set: face-DCGAN faces + Canny edges, 64x64."""
  return ml_collections.ConfigDict({
      'name': 'edges2faces', 'train_split': 'train', 'test_split': 'test',
      'batch_size': batch_size, 'seed': 0, 'flip': False, 'jitter': 0,
      'args': {'n_train': n_train, 'n_test': n_test, 'seed': 0,
               'canny_sigma': 1.5},
      'train_limit': train_limit, 'test_limit': test_limit,
      **input_options()})


def smoke_mi(section: ml_collections.ConfigDict) -> None:
  """Shrinks an MI section for seconds-long test runs."""
  section.update({'ebm_ch': 4, 'ebm_blocks': 1, 'n_steps': 3,
                  'vid_hidden': 4, 'crd_dim': 8, 'crd_hidden': 4,
                  'crd_queue': 16})

"""Prune a Fashion-MNIST DCGAN teacher (Yu & Pool; method prune, task dcgan).

The teacher generator and discriminator are those of a
``configs/dcgan_teacher.py`` run (``teacher.init=run:<workdir>``; its
``disc`` is the self-supervised adversary). The default preset expects it
at ``runs/dcgan_teacher`` (relative to the working directory) and, when
that run has no export yet, trains it there first with
``configs/dcgan_teacher.py``'s default (``teacher.train``; ~15 min on 2
CPUs, once: later runs reuse it). From a fresh clone:

  python -m gcjax.main --config=configs/dcgan_prune.py    # self, 50% fine
  python -m gcjax.main --config=configs/dcgan_prune.py:kind=filter,sparsity=0.75
  python -m gcjax.main --config=configs/dcgan_prune.py:recipe=naive,schedule=oneshot
  python -m gcjax.main --config=configs/dcgan_prune.py:smoke   # seconds
  python -m gcjax.main --config=configs/dcgan_prune.py \\
      --config.teacher.init=run:/path/to/other/teacher_run

Options (``:a=b,...``): recipe (self | naive | distill | scratch | both),
kind (fine | filter), sparsity, schedule (oneshot | agp), mi (none | vem |
vid | crd: the MI add-on on the distillation term). Recipes and the
appendix's letters: ``gcjax/methods/prune/common.py``.
``experiments/prune_sweep.py`` runs the appendix's grid.

Presets:
  default: 1000 fine-tuning steps of batch 64 (AGP over the first half,
    10 mask updates), Adam 2e-4 (0.5, 0.999), lambda_distill 10 (MSE);
    FID/KID vs 512 real test images, domain IS and agreement with the
    teacher on 2000 samples, cost (a filter-pruned student is costed
    materialized; a fine-grained one also gets its nonzero-weight MACs).
  smoke: a random d=8 teacher and D (``teacher.init=''``), 4 steps,
    agreement + cost only.
"""

import ml_collections

from configs import common
from configs import dcgan_teacher as teacher_cfg

PRESETS = ('default', 'smoke')
# The options both prune configs take after ':' (pix2pix_prune.py imports
# them and the sections below).
OPTIONS = dict(recipe='self', kind='fine', sparsity=0.5, schedule='agp',
               mi='none')
RECIPES = ('self', 'naive', 'distill', 'scratch', 'both')


def prune(task: str, lambda_distill: float, distill_loss: str
          ) -> ml_collections.ConfigDict:
  """``config.prune``: what is pruned, how, and the fine-tuning recipe."""
  return ml_collections.ConfigDict({
      'task': task,                 # dcgan | pix2pix
      # self (b) | naive (d: oneshot, e: agp) | distill (g: oneshot,
      # h: agp) | scratch (c) | both (n); see gcjax/methods/prune/common.py.
      'recipe': 'self',
      'kind': 'fine',               # fine (weights) | filter (channels)
      'scope': 'layer',             # fine: layer | global threshold
      'sparsity': 0.5,              # final fraction of pruned weights
                                    # (filter: of each layer's filters)
      'schedule': 'agp',            # oneshot | agp (cubic)
      # AGP window as fractions of total_steps, and mask updates in it.
      'agp_start': 0.0, 'agp_end': 0.5, 'agp_updates': 10,
      'layers': (),                 # module paths; (): all convs but the
                                    # first and last
      # self: train the teacher's D too (the appendix does not settle it).
      'train_disc': False,
      'lambda_distill': lambda_distill,
      'distill_loss': distill_loss,  # mse | l1
  })


def apply_options(c: ml_collections.ConfigDict, arg, source: str) -> None:
  """Sets ``prune.*`` and ``mi.kind`` from the parsed ``:arg`` options."""
  common.check_choice(arg, 'mi', common.MI_KINDS, source)
  common.check_choice(arg, 'recipe', RECIPES, source)
  common.check_choice(arg, 'kind', ('fine', 'filter'), source)
  common.check_choice(arg, 'schedule', ('oneshot', 'agp'), source)
  c.prune.recipe = arg.recipe
  c.prune.kind = arg.kind
  c.prune.sparsity = arg.sparsity
  c.prune.schedule = arg.schedule
  c.mi.kind = arg.mi



def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, presets=PRESETS, source=__file__,
                         **OPTIONS)
  c = common.base()
  c.method = 'prune'
  c.prune = prune('dcgan', lambda_distill=10.0,
                               distill_loss='mse')
  c.teacher = ml_collections.ConfigDict({
      # A gcjax.teachers spec: run:<workdir> of a dcgan_teacher.py run (its
      # generator), or '' for a random DCGAN of the fields below (tests).
      'init': 'run:runs/dcgan_teacher',
      # The adversary: '' = the ``disc`` of the run teacher.init names.
      'disc_init': '',
      'd': 32, 'nz': 100, 'resolution': 32, 'channels': 1,
      # Trained into init's workdir first when that run has no export
      # (gcjax.chain); None: never.
      'train': teacher_cfg.get_config()})
  # A warm start to prune instead of the teacher (e.g. run:<kd workdir>).
  c.student = ml_collections.ConfigDict({'init': ''})
  # The random D's shape when teacher.init is '' (and nothing else).
  c.disc = ml_collections.ConfigDict({'d': 32, 'norm': 'batch'})
  c.loss = ml_collections.ConfigDict({'adversarial': 'vanilla',
                                      'gp_weight': 10.0})
  c.optim = ml_collections.ConfigDict({
      's': common.adam(2e-4, decay='none'),
      'd': common.adam(2e-4, decay='none')})
  c.mi = common.mi('none')
  c.mi.positive = 'teacher'
  c.data = teacher_cfg.fashion(batch_size=64)
  c.total_steps = 1000
  c.log_every = 100
  c.ckpt_every = 500
  c.n_samples = 16
  c.eval_batch_size = 100
  c.evals = ml_collections.ConfigDict({
      'fid': {'type': 'fid', 'every_steps': 0, 'pred': (), 'target': 'img',
              'batch_size': 50, 'limit': 512, 'kid_subset_size': 256},
      'is': {'type': 'is', 'every_steps': 0, 'pred': (), 'limit': 2000},
      'image': {'type': 'image', 'every_steps': 0, 'pred': ('student',),
                'target': ('teacher',), 'limit': 2000},
      'cost': common.cost_eval(64, 10),
  })
  if arg.preset == 'smoke':
    c.teacher.init = ''
    c.teacher.train = None
    c.teacher.d = 8
    c.disc.d = 4
    c.data = teacher_cfg.fashion(batch_size=8, limit=32, test_limit=16)
    c.total_steps = 4
    c.log_every = c.ckpt_every = 2
    c.n_samples = 2
    c.eval_batch_size = 8
    common.smoke_mi(c.mi)
    c.evals = ml_collections.ConfigDict({
        'image': common.image_eval(('teacher',)),
        'cost': common.cost_eval(2, 2)})
  apply_options(c, arg, __file__)
  return c

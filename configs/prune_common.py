"""The ``prune`` method's config sections (Yu & Pool), shared by
``configs/dcgan_prune.py`` and ``configs/pix2pix_prune.py``.

Options both files take after ``:`` (``--config=FILE:smoke,recipe=naive``):
``recipe``, ``kind``, ``sparsity``, ``schedule`` and ``mi``.
"""

import ml_collections

from configs import common

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

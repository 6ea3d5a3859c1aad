"""Method ``prune`` (Yu & Pool, self-supervised GAN compression).

A trained generator is pruned (``prune.kind``: fine-grained by weight
magnitude or filter by L1 norm; ``prune.schedule``: one-shot or AGP) and
fine-tuned by a recipe (``prune.recipe``, see ``common``): the paper's
self-supervised one uses the teacher's own trained discriminator as the
adversary plus distillation to the dense teacher. ``config.prune.task``
picks the network family, each a module of this package: ``dcgan``
(unconditional, from a ``gan`` dcgan run) or ``pix2pix`` (U-Net, from a
``gan`` pix2pix run). ``finalize`` materializes a filter-pruned generator
into a smaller dense one; a fine-grained one stays dense with zeros (the
``cost`` evaluator reports its nonzero-weight MACs).
"""

from gcjax import errors, methods

TASKS = ('dcgan', 'pix2pix')


def make(config, sample_batch):
  if config.prune.task not in TASKS:   # (common.py is not a task)
    raise errors.UserError(f'config.prune.task={config.prune.task!r}; '
                           f'expected one of {", ".join(TASKS)}')
  return methods.dispatch(__name__, 'prune.task', config.prune.task, config,
                          sample_batch)

"""Method ``kdit``: KDIT (Wang et al. 2022), data-free distillation of a
style-based teacher into conditional students, then limited-data
fine-tuning.

``config.kdit.student`` picks the recipe (``i2i``: reference- or
latent-guided image translation, StarGANv2-like; ``x2i``: a class-
conditional generator with a semantic encoder) and ``config.kdit.stage``
the stage: 1 distils from style-mixed triplets without data
(``config.data.name=''``), 2 fine-tunes on class-labelled images, starting
from stage 1's export (``student.init='run:<stage-1 workdir>'``; empty: the
from-scratch baseline).
"""

from gcjax import errors
from gcjax.methods import dispatch

STUDENTS = ('i2i', 'x2i')


def make(config, sample_batch):
  if config.kdit.student not in STUDENTS:
    raise errors.UserError(f'config.kdit.student={config.kdit.student!r}; '
                           f'expected one of {", ".join(STUDENTS)}')
  if config.kdit.stage not in (1, 2):
    raise errors.UserError(f'config.kdit.stage={config.kdit.stage!r}; '
                           'expected 1 (data-free distillation) or 2 '
                           '(fine-tuning on data)')
  return dispatch(__name__, 'kdit.student', config.kdit.student, config,
                  sample_batch)

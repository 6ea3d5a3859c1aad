"""Method ``omgd``: online multi-granularity distillation (+ the MI add-on).

``config.omgd.task`` picks the recipe, each a module of this package:
``pix2pix`` (paired, U-Net teachers trained online) and ``cyclegan``
(unpaired; a ResNet teacher trained online or the pretrained vintagify
generator). Both update the student with ``gcjax.recipes.distill``.
"""

from gcjax import methods


def make(config, sample_batch):
  return methods.dispatch(__name__, 'omgd.task', config.omgd.task, config,
                          sample_batch)

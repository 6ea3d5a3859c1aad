"""Method ``gan``: plain GAN training, used to train teachers.

``config.gan.flavor`` picks the recipe, each a module of this package:
``pix2pix`` (paired, U-Net + conditional PatchGAN), ``dcgan``
(unconditional DCGAN/WGAN-GP by depth scale d), ``cyclegan`` (unpaired, two
ResNet generators).
"""

from gcjax import methods


def make(config, sample_batch):
  return methods.dispatch(__name__, 'gan.flavor', config.gan.flavor, config,
                          sample_batch)

"""Method ``gan``: plain GAN training, used to train teachers.

``config.gan.flavor`` picks the recipe, each in its own module:
``pix2pix`` (paired, U-Net + conditional PatchGAN; ``gan_pix2pix``),
``dcgan`` (unconditional DCGAN/WGAN-GP by depth scale d; ``gan_dcgan``),
``cyclegan`` (unpaired, two ResNet generators; ``gan_cyclegan``).
"""

import importlib

FLAVORS = ('pix2pix', 'dcgan', 'cyclegan')


def make(config, sample_batch):
  flavor = config.gan.flavor
  if flavor not in FLAVORS:
    raise ValueError(f'config.gan.flavor={flavor!r}; expected one of '
                     f'{", ".join(FLAVORS)}')
  module = importlib.import_module(f'gcjax.methods.gan_{flavor}')
  return module.make(config, sample_batch)

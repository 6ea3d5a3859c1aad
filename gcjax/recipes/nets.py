"""Networks built from config sections (the one place that maps a section's
keys onto a module's fields)."""

from __future__ import annotations

from gcjax import errors
from gcjax.models import patchgan, resnet, unet

RESNET_ARCHS = ('resnet', 'mobile')


def unet_generator(section, out_ch: int) -> unet.UNetGenerator:
  """A U-Net from a section with ngf, norm, dropout, n_res."""
  return unet.UNetGenerator(ngf=section.ngf, out_ch=out_ch, norm=section.norm,
                            dropout=section.dropout, n_res=section.n_res)


def patch_discriminator(section) -> patchgan.PatchDiscriminator:
  """A PatchGAN from a section with ndf, n_layers, norm."""
  return patchgan.PatchDiscriminator(ndf=section.ndf,
                                     n_layers=section.n_layers,
                                     norm=section.norm)


def resnet_generator(section, out_ch: int):
  """A ResNet generator from a section with arch, ngf, n_blocks, norm,
  dropout (``arch``: 'resnet' = CycleGAN's, 'mobile' = GAN-Compression's)."""
  if section.arch not in RESNET_ARCHS:
    raise errors.UserError(f'generator arch {section.arch!r}; expected one '
                           f'of {RESNET_ARCHS}')
  cls = (resnet.MobileResnetGenerator if section.arch == 'mobile'
         else resnet.ResnetGenerator)
  return cls(ngf=section.ngf, n_blocks=section.n_blocks, out_ch=out_ch,
             norm=section.norm, dropout=section.dropout)

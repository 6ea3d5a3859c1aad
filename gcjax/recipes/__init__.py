"""Building blocks that several methods share (not plug-ins themselves).

* ``adversarial``: the one discriminator update and generator adversarial
  loss, for unconditional, paired (conditional) and unpaired data, with
  hooks for extra D and G terms.
* ``nets``: networks built from config sections.
* ``cycle``: the CycleGAN update (two generators, two discriminators, image
  pools), used to train teachers and by OMGD's online CycleGAN teacher.
* ``distill``: OMGD's student update (SSIM, VGG style/perceptual, TV,
  feature adapters, the MI add-on), shared by its Pix2Pix and CycleGAN tasks.
"""

"""The KDIT teacher: a style-based GAN with mixing regularization on, on
Fashion-MNIST 32x32 (method gan, flavour stylegan, without DLS).

Run:
  python -m gcjax.main --config=configs/kdit_teacher.py --workdir=runs/kdit_teacher
  python -m gcjax.main --config=configs/kdit_teacher.py:smoke

It is ``configs/stylegan_nodls.py`` with ``generator.mixing_prob=0.9``
(StyleGAN's mixing regularization: 90% of the rows take a second latent
from a random layer on, so styles stay separable per layer, which KDIT's
style-mixed triplets rely on), d_z 64, FID of 500 samples and the cost
table. Its export (``generator``, ``disc``) is the teacher of
``configs/kdit_i2i.py`` / ``kdit_x2i.py``:
``--config.teacher.init=run:<this workdir>``.

Presets:
  default: the stylegan_nodls networks (G 0.3M, D 0.3M parameters), batch
    16, 3000 steps.
  smoke: the stylegan smoke nets, 4 steps.
"""

import ml_collections

from configs import common, stylegan_nodls

PRESETS = ('default', 'smoke')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, presets=PRESETS, source=__file__).preset
  c = stylegan_nodls.get_config(preset)
  c.generator.mixing_prob = 0.9
  if preset == 'default':
    c.generator.z_dim = 64
    c.disc.ch_max = 32    # the teacher as trained before stylegan_dls's
    #                       default D widened to 64 (issue 13 follow-up)
    c.total_steps = 3000
    c.evals = ml_collections.ConfigDict({
        'fid': {'type': 'fid', 'every_steps': 0, 'pred': ('generator',),
                'target': 'img', 'batch_size': 50, 'limit': 500,
                'kid_subset_size': 500},
        'cost': common.cost_eval(16, 10)})
  return c

"""Distil a Fashion-MNIST DCGAN teacher (trained by gcjax) into a student.

The teacher is the generator of a ``configs/dcgan_teacher.py`` run
(``--config.teacher.init=run:<workdir>``; its architecture comes from the
run's export card). Real Fashion-MNIST images are the discriminator's real side for
``loss.kind='joint'``/``'scratch'`` and the FID target.

Run:
  python -m gcjax.main --config=configs/dcgan_teacher.py --workdir=runs/t
  python -m gcjax.main --config=configs/fashion_kd.py \\
      --config.teacher.init=run:runs/t                  # MSE, d/4
  python -m gcjax.main --config=configs/fashion_kd.py \\
      --config.teacher.init=run:runs/t \\
      --config.loss.kind=joint --config.student.d=4
  python -m gcjax.main --config=configs/fashion_kd.py:smoke      # seconds

``experiments/fashion_kd_sweep.py`` runs the grid (student d x loss kind).

Presets:
  default: student d=8 (a quarter of the default d=32 teacher), batch 64,
    1500 steps, FID vs 512 real test images, domain IS and sharpness on
    2000 samples: several minutes on 2 CPU cores.
  smoke: a randomly initialised d=8 teacher (``teacher.init=''``; pass
    ``--config.teacher.init=run:<workdir>`` to use a real one), student
    d=4, 3 steps, cost + agreement evaluators only.
"""

import ml_collections

from configs import common, dcgan_kd
from configs import dcgan_teacher as teacher

PRESETS = ('default', 'smoke')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, presets=PRESETS, source=__file__, mi='none')
  common.check_choice(arg, 'mi', common.MI_KINDS, __file__)
  preset = arg.preset
  c = dcgan_kd.kd_base()
  # Required: pass --config.teacher.init=run:<workdir> (a dcgan_teacher.py
  # run); the placeholder fails with an error that names it.
  c.teacher.init = 'run:<workdir of a dcgan_teacher.py run>'
  c.student.d = 8
  c.disc.d = 32
  c.loss.real = 'data'
  c.data = teacher.fashion(batch_size=64)
  c.total_steps = 1500
  c.log_every = 100
  c.ckpt_every = 500
  c.n_samples = 16
  c.eval_batch_size = 100
  c.evals = ml_collections.ConfigDict({
      'fid': {'type': 'fid', 'every_steps': 0, 'pred': (), 'target': 'img',
              'batch_size': 50, 'limit': 512, 'kid_subset_size': 256},
      'is': {'type': 'is', 'every_steps': 0, 'pred': (), 'limit': 2000},
      'laplacian': {'type': 'laplacian', 'every_steps': 0, 'pred': (),
                    'target': ('img',), 'limit': 2000},
      'image': {'type': 'image', 'every_steps': 0, 'pred': (),
                'target': ('teacher',), 'limit': 2000},
      'cost': common.cost_eval(64, 10),
  })
  if preset == 'default':
    pass
  elif preset == 'smoke':
    c.teacher.init = ''   # a random d=8 teacher
    c.teacher.d = 8
    c.student.d = 4
    c.disc.d = 4
    c.data = teacher.fashion(batch_size=8, limit=32)
    c.total_steps = 3
    c.log_every = c.ckpt_every = 3
    c.n_samples = 2
    c.eval_batch_size = 8
    common.smoke_mi(c.mi)
    c.evals = ml_collections.ConfigDict({
        'image': common.image_eval(('teacher',)),
        'cost': common.cost_eval(2, 2)})
  c.mi.kind = arg.mi
  return c

"""Distil the pretrained 64x64 face DCGAN (d=64) into a d/4 or d/8 student.

Aguinaldo et al. (2019): the student (same DCGAN architecture, depth scale
``student.d``) learns the teacher's mapping z -> image on fresh z each step.
The teacher is gan-face-generate 1.1.1's generator (z=100, 3.58M params),
loaded through the verified asset loader; it is frozen and not
checkpointed. No real images are needed: the evaluators compare the student
with teacher samples on the same z (FID/KID vs the teacher, PSNR/SSIM
agreement, sharpness), and with ``loss.kind='joint'`` or ``'scratch'`` the
discriminator's "real" side is teacher samples (``loss.real='teacher'``).

No dataset is loaded (``config.data.name=''``, a data-free run):
``data.test_limit`` sets how many latents the evaluators draw.

Run:
  python -m gcjax.main --config=configs/dcgan_kd.py               # d=16, MSE
  python -m gcjax.main --config=configs/dcgan_kd.py:d8            # d=8
  python -m gcjax.main --config=configs/dcgan_kd.py \\
      --config.loss.kind=joint                                    # eq. 4
  python -m gcjax.main --config=configs/dcgan_kd.py:smoke         # seconds
  python -m gcjax.main --config=configs/dcgan_kd.py:paper         # long

Presets:
  MI add-on: ``--config.mi.kind=vem`` (or vid, crd) adds lambda_mi times
  the MI critic's student term (gcjax.objectives.mi) to any loss kind.

  default: student d=16 (0.38M params, 1/9.4 of the teacher; 1/12 of its
    true MACs), MSE, batch 32, 600 steps, 256 evaluation latents. Measured
    on a shared 2-core CPU (load ~10): 35 min wall, 12 min CPU; the student
    is blurry but laid out like the teacher: agree_psnr 17.5 dB, SSIM 0.35,
    FID vs teacher samples ~305 (256 samples; biased high at this N).
  d8: student d=8 (0.15M params).
  smoke: student d=4, 3 steps, 16 evaluation latents, cost only.
  paper: 20k steps of batch 64, 2048 evaluation latents (an accelerator).
"""

import ml_collections

from configs import common

PRESETS = ('default', 'd8', 'smoke', 'paper')


def kd_base() -> ml_collections.ConfigDict:
  """Every ``kd`` key with its default; the experiment files adjust it."""
  c = common.base()
  c.method = 'kd'
  c.teacher = ml_collections.ConfigDict({
      # A gcjax.teachers spec: 'pretrained:face_dcgan', 'run:<workdir>' (a
      # dcgan_teacher.py run), or '' for a random DCGAN of the fields below
      # (tests only).
      'init': 'pretrained:face_dcgan',
      'd': 16, 'nz': 100, 'resolution': 32, 'channels': 1})
  c.student = ml_collections.ConfigDict({'d': 16, 'norm': 'batch',
                                         'init': ''})
  c.disc = ml_collections.ConfigDict({'d': 32, 'norm': 'batch'})
  c.loss = ml_collections.ConfigDict({
      'kind': 'mse',            # mse | joint | scratch
      'lambda_adv': 0.05,       # joint: MSE + lambda_adv * adversarial
      'real': 'teacher',        # D's real images: teacher | data
      'adversarial': 'vanilla',  # vanilla (NS-GAN) | wgan-gp
      'gp_weight': 10.0, 'n_critic': 1})
  c.optim = ml_collections.ConfigDict({
      's': common.adam(2e-4, decay='none'),
      'd': common.adam(2e-4, decay='none')})
  # The MI add-on (VEM paper): none | vem | vid | crd; t+ is always the
  # teacher's image of the student's z here.
  c.mi = common.mi('none')
  c.mi.positive = 'teacher'
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, presets=PRESETS, source=__file__, mi='none')
  common.check_choice(arg, 'mi', common.MI_KINDS, __file__)
  preset = arg.preset
  c = kd_base()
  c.data = common.no_data(batch_size=32, eval_rows=256)
  c.total_steps = 600
  c.log_every = 50
  c.ckpt_every = 300
  c.n_samples = 8
  c.eval_batch_size = 64
  c.evals = ml_collections.ConfigDict({
      'fid': {'type': 'fid', 'every_steps': 0, 'pred': (),
              'target': 'teacher',
              'batch_size': 32, 'kid_subset_size': 128},
      'image': common.image_eval(('teacher',)),
      'laplacian': {'type': 'laplacian', 'every_steps': 0, 'pred': (),
                    'target': (), 'limit': 0},
      'cost': common.cost_eval(64, 10),
  })
  if preset == 'default':
    pass
  elif preset == 'd8':
    c.student.d = 8
  elif preset == 'smoke':
    c.data = common.no_data(batch_size=8, eval_rows=16)
    c.student.d = 4
    c.disc.d = 4
    c.total_steps = 3
    c.log_every = c.ckpt_every = 3
    c.n_samples = 2
    c.eval_batch_size = 8
    common.smoke_mi(c.mi)
    c.evals = ml_collections.ConfigDict({
        'image': common.image_eval(('teacher',)),
        'cost': common.cost_eval(2, 2)})
  elif preset == 'paper':
    c.data = common.no_data(batch_size=64, eval_rows=2048)
    c.total_steps = 20_000
    c.ckpt_every = 2000
    c.sample_every = 2000
    c.evals.fid.kid_subset_size = 1000
  c.mi.kind = arg.mi
  return c

"""Prune a Pix2Pix U-Net teacher (Yu & Pool; method prune, task pix2pix).

The teacher U-Net and its conditional PatchGAN are those of a
``configs/pix2pix_gan.py`` run (``teacher.init=run:<workdir>``). The
default preset expects it at ``runs/pix2pix_gan`` and, when that run has
no export yet, trains it there first with ``configs/pix2pix_gan.py``'s
default (``teacher.train``; ~10 min on 2 CPUs, once). From a fresh clone:

  python -m gcjax.main --config=configs/pix2pix_prune.py  # self, 50% fine
  python -m gcjax.main --config=configs/pix2pix_prune.py:kind=filter
  python -m gcjax.main --config=configs/pix2pix_prune.py:smoke  # seconds

Options (``:a=b,...``): recipe (self | naive | distill | both; scratch is
DCGAN-only), kind (fine | filter), sparsity, schedule (oneshot | agp), mi
(none | vem | vid | crd). The task loss is 100 * L1 to the target (as the
teacher's); distillation is L1 to the teacher's output, weight 100.

Presets:
  default: edges2fashion 32x32, 800 fine-tuning steps of batch 16 (AGP over
    the first half), Adam 2e-4 (0.5, 0.999) with linear decay over the
    second half; L1/PSNR/SSIM against the target and the teacher, cost.
  smoke: a random ngf=4 U-Net and PatchGAN at 16x16, 4 steps.
"""

import ml_collections

from configs import common, pix2pix_gan
from configs import dcgan_prune as prune_common

PRESETS = ('default', 'smoke')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, presets=PRESETS, source=__file__,
                         **prune_common.OPTIONS)
  c = common.base()
  c.method = 'prune'
  c.prune = prune_common.prune('pix2pix', lambda_distill=100.0,
                               distill_loss='l1')
  c.teacher = ml_collections.ConfigDict({
      # run:<workdir> of a pix2pix_gan.py run, or '' for a random U-Net of
      # the fields below (tests).
      'init': 'run:runs/pix2pix_gan',
      'disc_init': '',
      'ngf': 32, 'norm': 'batch', 'dropout': 0.5, 'n_res': 0,
      # Trained into init's workdir first when that run has no export
      # (gcjax.chain); None: never.
      'train': pix2pix_gan.get_config()})
  c.student = ml_collections.ConfigDict({'init': ''})
  c.disc = ml_collections.ConfigDict({'ndf': 32, 'n_layers': 2,
                                      'norm': 'batch'})
  c.loss = ml_collections.ConfigDict({'adversarial': 'vanilla',
                                      'lambda_l1': 100.0})
  c.optim = ml_collections.ConfigDict({
      's': common.adam(2e-4, decay='linear', decay_start=400),
      'd': common.adam(2e-4, decay='linear', decay_start=400)})
  c.mi = common.mi('none')
  c.data = common.edges2fashion(resolution=32, batch_size=16)
  c.total_steps = 800
  c.log_every = 50
  c.ckpt_every = 400
  c.sample_every = 0
  c.evals = ml_collections.ConfigDict({
      'image': common.image_eval(('tgt', 'teacher')),
      'cost': common.cost_eval(16, 10),
  })
  if arg.preset == 'smoke':
    c.teacher.init = ''
    c.teacher.train = None
    c.teacher.ngf = 4
    c.disc.ndf = 4
    c.data = common.edges2fashion(resolution=16, batch_size=8,
                                  train_limit=64, test_limit=16)
    c.total_steps = 4
    c.optim.s.decay_start = c.optim.d.decay_start = 2
    c.log_every = c.ckpt_every = 2
    c.eval_batch_size = 8
    common.smoke_mi(c.mi)
    c.evals.cost.latency_batch = 2
    c.evals.cost.latency_iters = 2
  prune_common.apply_options(c, arg, __file__)
  return c

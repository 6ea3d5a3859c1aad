"""Train a DCGAN teacher on Fashion-MNIST 32x32 (method gan, flavour dcgan).

Run:
  python -m gcjax.main --config=configs/dcgan_teacher.py          # default
  python -m gcjax.main --config=configs/dcgan_teacher.py:smoke    # seconds
  python -m gcjax.main --config=configs/dcgan_teacher.py:wgan     # WGAN-GP
  python -m gcjax.main --config=configs/dcgan_teacher.py:paper

The run's ``export/generator.npz`` is the teacher of ``configs/fashion_kd.py``
(``--config.teacher.init=run:<workdir>``).

Presets:
  default: d=32 (0.37M generator parameters), non-saturating GAN loss,
    batch 64, 2000 steps. One step measured 1.1 s on a 2-core CPU shared
    at load ~9 (d=64: 6.6 s, hence d=32); not yet run end to end: the
    estimate for 2 idle cores is ~10 minutes plus the FID evaluation
    (1000 + 1000 Inception passes: several minutes on CPU).
  wgan: the paper's WGAN variant: WGAN-GP (lambda 10), 5 critic updates per
    generator update (so batch 5 x 64), layer-norm critic, Adam 1e-4
    (0.5, 0.9); about 4x slower per step than default.
  smoke: 32x32, d=4, 4 steps: for tests.
  paper: the paper's large teacher scale for (Fashion-)MNIST, d=256, WGAN-GP
    (Aguinaldo et al. picked d=256 on MNIST), 100k generator updates.
"""

import ml_collections

from configs import common

PRESETS = ('default', 'wgan', 'smoke', 'paper')


def fashion(resolution=32, channels=1, batch_size=64, limit=-1,
            train_limit=0, test_limit=0) -> ml_collections.ConfigDict:
  """The embedded Fashion-MNIST images (keys img, label), all classes."""
  return ml_collections.ConfigDict({
      'name': 'fashion', 'train_split': 'train', 'test_split': 'test',
      'batch_size': batch_size, 'seed': 0, 'flip': False, 'jitter': 0,
      'args': {'resolution': resolution, 'channels': channels,
               'limit': limit},
      'train_limit': train_limit, 'test_limit': test_limit,
      **common.input_options()})


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, presets=PRESETS, source=__file__).preset
  c = common.base()
  c.method = 'gan'
  c.gan = ml_collections.ConfigDict({'flavor': 'dcgan'})
  c.data = fashion()
  c.generator = ml_collections.ConfigDict({'d': 32, 'nz': 100,
                                           'norm': 'batch'})
  c.disc = ml_collections.ConfigDict({'d': 32, 'norm': 'batch'})
  c.loss = ml_collections.ConfigDict({'adversarial': 'vanilla',
                                      'gp_weight': 10.0, 'n_critic': 1})
  c.total_steps = 2000
  c.optim = ml_collections.ConfigDict({
      'g': common.adam(2e-4, decay='none'),
      'd': common.adam(2e-4, decay='none')})
  c.log_every = 100
  c.ckpt_every = 1000
  c.n_samples = 16
  c.eval_batch_size = 100
  c.evals = ml_collections.ConfigDict({
      'fid': {'type': 'fid', 'every_steps': 0, 'pred': (), 'target': 'img',
              'batch_size': 50, 'limit': 1000, 'kid_subset_size': 500},
      'is': {'type': 'is', 'every_steps': 0, 'pred': (), 'limit': 5000},
      'cost': common.cost_eval(64, 10),
  })
  if preset == 'default':
    pass
  elif preset == 'wgan':
    c.loss.adversarial = 'wgan-gp'
    c.loss.n_critic = 5
    c.disc.norm = 'layer'
    c.data.batch_size = 5 * 64
    c.optim.g = common.adam(1e-4, b1=0.5, b2=0.9, decay='none')
    c.optim.d = common.adam(1e-4, b1=0.5, b2=0.9, decay='none')
  elif preset == 'smoke':
    c.data = fashion(batch_size=8, limit=64, test_limit=16)
    c.generator.d = c.disc.d = 4
    c.total_steps = 4
    c.log_every = c.ckpt_every = 2
    c.n_samples = 4
    c.eval_batch_size = 8
    c.evals = ml_collections.ConfigDict({
        'cost': common.cost_eval(2, 2)})
  elif preset == 'paper':
    c.data = fashion(batch_size=5 * 64)
    c.generator.d = c.disc.d = 256
    c.loss.adversarial = 'wgan-gp'
    c.loss.n_critic = 5
    c.disc.norm = 'layer'
    c.optim.g = common.adam(1e-4, b1=0.5, b2=0.9, decay='none')
    c.optim.d = common.adam(1e-4, b1=0.5, b2=0.9, decay='none')
    c.total_steps = 100_000
    c.ckpt_every = 5000
    c.evals.fid.limit = 10_000
  return c

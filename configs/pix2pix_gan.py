"""Train a Pix2Pix teacher (U-Net + conditional PatchGAN, GAN + 100 * L1).

Run:
  python -m gcjax.main --config=configs/pix2pix_gan.py            # default
  python -m gcjax.main --config=configs/pix2pix_gan.py:smoke      # seconds
  python -m gcjax.main --config=configs/pix2pix_gan.py:paper \\
      --config.data.args.path=/path/to/edges2shoes

Presets:
  default: edges2fashion (Fashion-MNIST shoes + Canny edges, shipped by the
    Debian package dataset-fashion-mnist) at 32x32 grayscale; about 10
    minutes on 2 CPU cores. Expect test L1 ~0.1-0.2 and sharp shoe shapes.
  smoke: 16x16, ngf=4, a few steps: for tests.
  paper: pix2pix edges2shoes at 256x256 from its aligned folder, batch 4,
    Adam 2e-4 (0.5, 0.999), 100 + 100 epochs-style linear decay.
"""

import ml_collections

from configs import common

PRESETS = ('default', 'smoke', 'paper')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, presets=PRESETS, source=__file__).preset
  c = common.base()
  c.method = 'gan'
  c.gan = ml_collections.ConfigDict({'flavor': 'pix2pix'})
  c.data = common.edges2fashion(resolution=32, batch_size=16)
  c.generator = ml_collections.ConfigDict(
      {'ngf': 32, 'norm': 'batch', 'dropout': 0.5, 'n_res': 0,
       # A gcjax.teachers spec to warm-start from ('' = random init).
       'init': ''})
  c.disc = ml_collections.ConfigDict({'ndf': 32, 'n_layers': 2,
                                      'norm': 'batch'})
  c.loss = ml_collections.ConfigDict({'adversarial': 'vanilla',
                                      'lambda_l1': 100.0})
  c.total_steps = 1500
  c.optim = ml_collections.ConfigDict({
      'g': common.adam(2e-4, decay='linear', decay_start=750),
      'd': common.adam(2e-4, decay='linear', decay_start=750)})
  c.log_every = 50
  c.ckpt_every = 500
  c.sample_every = 500
  c.evals = ml_collections.ConfigDict({
      'image': common.image_eval(('tgt',)),
      'cost': common.cost_eval(16, 10),
  })
  if preset == 'default':
    pass
  elif preset == 'smoke':
    c.data = common.edges2fashion(resolution=16, batch_size=8,
                                       train_limit=64, test_limit=16)
    c.generator.ngf = 4
    c.disc.ndf = 4
    c.total_steps = 4
    c.optim.g.decay_start = c.optim.d.decay_start = 2
    c.log_every = c.ckpt_every = 2
    c.sample_every = 0
    c.eval_batch_size = 8
    c.evals.cost.latency_batch = 2
    c.evals.cost.latency_iters = 2
  elif preset == 'paper':
    c.data = ml_collections.ConfigDict({
        'name': 'paired_folder', 'train_split': 'train', 'test_split': 'val',
        'batch_size': 4, 'seed': 0, 'flip': False, 'jitter': 0,
        # pix2pix's edges2shoes (train/ and val/ of A|B pairs, 256x512).
        'args': {'path': 'datasets/edges2shoes', 'resolution': 256},
        'train_limit': 0, 'test_limit': 0,
        **common.input_options()})
    c.generator.ngf = 64
    c.disc.ndf = 64
    c.disc.n_layers = 3
    # edges2shoes: 49,825 pairs, batch 4 -> ~12.5k steps/epoch; 5 + 15 epochs
    # as in GAN-Compression's edges2shoes teacher schedule.
    c.total_steps = 20 * 12456
    c.optim.g.decay_start = c.optim.d.decay_start = 5 * 12456
    c.log_every = 100
    c.ckpt_every = 5000
    c.sample_every = 5000
    c.eval_batch_size = 16
  return c

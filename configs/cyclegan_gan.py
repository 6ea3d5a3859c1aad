"""Train a CycleGAN teacher (method ``gan``, flavour ``cyclegan``).

Two ResNet generators (G_A: A -> B is the teacher that gets evaluated and
exported), two PatchGAN discriminators, LSGAN, cycle loss 10, identity 0.5,
pools of 50 past fakes.

Run:
  python -m gcjax.main --config=configs/cyclegan_gan.py          # default
  python -m gcjax.main --config=configs/cyclegan_gan.py:smoke
  python -m gcjax.main --config=configs/cyclegan_gan.py:paper \\
      --config.data.args.root=/path/to/horse2zebra

Presets:
  default: edges -> shoes on edges2fashion 32x32 grayscale, used as two
    unpaired domains (no CycleGAN loss reads the pairing; the test pairs
    make PSNR/SSIM to the true shoe meaningful), ResNet ngf 16, 9 blocks,
    batch 8; about 10 minutes on 2 CPU cores.
  smoke: 16x16, ngf 2, two blocks, 2 steps.
  paper / paper_summer2winter: CycleGAN's recipe on horse2zebra or
    summer2winter_yosemite folders (trainA/trainB/testA/testB): ResNet-9
    ngf 64 (11.4M params, 56.8G literature MACs), PatchGAN ndf 64, batch 1,
    256x256, Adam 2e-4 (0.5, 0.999), 100 + 100 epochs with linear decay.
"""

import ml_collections

from configs import common
from configs import cyclegan_omgd as omgd

PRESETS = ('default', 'smoke', 'paper', 'paper_summer2winter')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, presets=PRESETS, source=__file__).preset
  c = common.base()
  c.method = 'gan'
  c.gan = ml_collections.ConfigDict({'flavor': 'cyclegan'})
  c.data = common.edges2fashion(resolution=32, batch_size=8)
  c.cyclegan = omgd.cyclegan_section(domains=('src', 'tgt'))
  c.generator = omgd.generator('resnet', 16)
  c.disc = omgd.disc(ndf=32, n_layers=2)
  c.total_steps = 1000
  c.optim = ml_collections.ConfigDict({
      'g': common.adam(2e-4, decay='linear', decay_start=500),
      'd': common.adam(2e-4, decay='linear', decay_start=500)})
  c.log_every = 50
  c.ckpt_every = 500
  c.sample_every = 500
  c.evals = ml_collections.ConfigDict({
      'image': common.image_eval(('tgt',)),
      'cost': common.cost_eval(8, 10),
      'fid': {'type': 'fid', 'every_steps': 0, 'pred': (), 'target': 'tgt',
              'stats_path': '', 'kid_subsets': 10, 'kid_subset_size': 500,
              'batch_size': 32, 'limit': 1000}})

  def decay_at(start):
    for o in c.optim.values():
      o.decay_start = start

  if preset == 'default':
    pass
  elif preset == 'smoke':
    c.data = common.edges2fashion(resolution=16, batch_size=8,
                                       train_limit=32, test_limit=8)
    c.generator = omgd.generator('resnet', 2, n_blocks=2)
    c.disc = omgd.disc(ndf=4, n_layers=2)
    c.cyclegan.pool_size = 4
    c.total_steps = 2
    decay_at(1)
    c.log_every = c.ckpt_every = 1
    c.sample_every = 0
    c.eval_batch_size = 8
    c.evals = ml_collections.ConfigDict(
        {'image': common.image_eval(('tgt',))})
  elif preset in ('paper', 'paper_summer2winter'):
    name = 'horse2zebra' if preset == 'paper' else 'summer2winter_yosemite'
    c.data = omgd.unpaired(name)
    c.cyclegan.domains = ('a', 'b')
    c.generator = omgd.generator('resnet', 64)
    c.disc = omgd.disc(ndf=64, n_layers=3)
    epoch = omgd.PAPER_SETS[name][2]
    c.total_steps = 200 * epoch
    decay_at(100 * epoch)
    c.log_every = 100
    c.ckpt_every = 5000
    c.sample_every = 5000
    c.eval_batch_size = 8
    del c.evals['image']   # unpaired test sets: no per-image target.
    c.evals.fid.limit = 0
    c.evals.fid.target = 'b'
    c.evals.cost.latency_batch = 4
  return c

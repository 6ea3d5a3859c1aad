"""Dynamic latent scale GAN: an invertible style-based generator (method
gan, flavour stylegan) on Fashion-MNIST 32x32.

Run:
  python -m gcjax.main --config=configs/stylegan_dls.py            # default
  python -m gcjax.main --config=configs/stylegan_dls.py:smoke      # seconds
  python -m gcjax.main --config=configs/stylegan_dls.py:paper      # CelebA
  python -m gcjax.main --config=configs/stylegan_dls.py --config.dls.enc_on=d

``configs/stylegan_nodls.py`` is the same run with s = 1 (the baseline);
``python -m experiments.dls_report`` trains both and draws the comparison.
The run exports ``generator`` (carrying the latent scale) and ``disc``
(with the encoder head): ``run:<workdir>`` / ``run:<workdir>:disc``.

Presets:
  default: d_z 32, w 128, 4 mapping layers, G widths <= 32, D widths <= 64
    (G 0.15M, D 0.22M parameters), batch 16, the paper's settings otherwise
    (lambda_enc 1 on D and G, R1 10 every step, Adam (0, 0.99) lr 1e-3,
    mapping 1e-5, x0.98 per epoch of 3750 steps) except the ring buffer:
    64 steps, not 512. 2000 steps; reconstruction PSNR/SSIM every 500
    steps (256 test images), FID on 500 samples at the end.
    Why not the paper's d_z 512 / buffer 512: at that size, 2000 steps, a
    32-wide D, both encoders stayed at z' ~ 0 (L_enc 1.007 DLS vs 1.006
    No-DLS). ``experiments/dls_diagnose.py`` finds no plumbing fault (the
    first updates follow the hand losses' gradients, tested) but a slow
    encoder: a linear read-out of z from the random generator's images
    recovers nothing at d_z 512, and the 512-step buffer (the author's,
    for ~500k steps) holds s ~ 1 for the first ~500 steps of a short run.
    With d_z 32, D widths 64 and a 64-step buffer the DLS encoder loss
    falls to ~0.37 by step 800 against ~0.92 for No-DLS
    (``experiments/results/dls_report.md``).
    Time (estimated; no idle machine was available to measure it): the
    training ran at ~5 it/s on the 2 cores at load ~3 (800 steps in 4.8
    min with compiles), so ~7 min for 2000 steps on 2 idle cores, plus the
    evaluations (the FID pass over 500 samples and the test statistics;
    Inception ran at ~1.2 s/image under load 8-28, faster idle): about 10
    minutes idle if Inception runs at <= 0.3 s/image; 3-5x that on a
    loaded machine. For a shorter check, ``--config.total_steps=800``
    already separates DLS from No-DLS.
  smoke: 8x8-wide nets, d_z 16, 4 steps: for tests.
  paper: CelebA 128x128 from TFDS (``celeb_a``, resized square; or set
    data to an image folder), d_z 512, w 512, 8 mapping layers, widths <=
    256 (StyleGAN2 at reduced width, as the paper), 50 epochs of batch 16.
"""

import ml_collections

from configs import common

PRESETS = ('default', 'smoke', 'paper')


def fashion(batch_size=16, limit=-1, test_limit=0):
  """Fashion-MNIST 32x32 gray (keys img, label), all classes."""
  return ml_collections.ConfigDict({
      'name': 'fashion', 'train_split': 'train', 'test_split': 'test',
      'batch_size': batch_size, 'seed': 0, 'flip': False, 'jitter': 0,
      'args': {'resolution': 32, 'channels': 1, 'limit': limit},
      'train_limit': 0, 'test_limit': test_limit,
      **common.input_options()})


def adam(lr: float) -> ml_collections.ConfigDict:
  """Adam (0, 0.99) at ``lr`` (the author's betas)."""
  return ml_collections.ConfigDict({'lr': lr, 'b1': 0.0, 'b2': 0.99})


def evals(limit: int, fid_limit: int, every_steps: int = 0):
  """FID of samples; PSNR/SSIM of real and generated reconstructions;
  LPIPS of real reconstructions; cost."""
  image = common.image_eval(('img',), every_steps)
  image.update(pred=('recon',), limit=limit)
  return ml_collections.ConfigDict({
      'fid': {'type': 'fid', 'every_steps': 0, 'pred': ('generator',),
              'target': 'img', 'batch_size': 50, 'limit': fid_limit,
              'kid_subset_size': min(500, fid_limit)},
      'recon': image,
      'gen_recon': {'type': 'image', 'every_steps': every_steps,
                    'pred': ('gen_recon',), 'target': ('generator',),
                    'limit': limit},
      'lpips': {'type': 'lpips', 'every_steps': 0, 'pred': ('recon',),
                'target': ('img',), 'net': 'alex', 'limit': limit},
      'cost': common.cost_eval(16, 10)})


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, presets=PRESETS, source=__file__).preset
  c = common.base()
  c.method = 'gan'
  c.gan = ml_collections.ConfigDict({'flavor': 'stylegan'})
  c.data = fashion()
  c.generator = ml_collections.ConfigDict({
      'z_dim': 32, 'w_dim': 128, 'map_layers': 4, 'ch_base': 512,
      'ch_max': 32, 'mixing_prob': 0.0})
  c.disc = ml_collections.ConfigDict({'ch_base': 512, 'ch_max': 64})
  c.loss = ml_collections.ConfigDict({'r1_weight': 10.0})
  c.dls = ml_collections.ConfigDict({
      'enabled': True, 'tracker': 'ring', 'buffer': 64, 'ema_decay': 0.999,
      'lambda_enc': 1.0, 'enc_on': 'dg'})
  c.optim = ml_collections.ConfigDict({
      'g': adam(1e-3), 'map': adam(1e-5), 'd': adam(1e-3),
      'decay_rate': 0.98, 'epoch_steps': 3750})
  c.total_steps = 2000
  c.log_every = 50
  c.ckpt_every = 1000
  c.n_samples = 8
  c.eval_batch_size = 64
  c.evals = evals(limit=256, fid_limit=500, every_steps=500)
  if preset == 'smoke':
    c.data = fashion(batch_size=8, limit=64, test_limit=16)
    c.generator.update(z_dim=16, w_dim=16, map_layers=2, ch_base=64,
                       ch_max=8)
    c.disc.update(ch_base=64, ch_max=8)
    c.dls.buffer = 4
    c.total_steps = 4
    c.log_every = c.ckpt_every = 2
    c.n_samples = 4
    c.eval_batch_size = 8
    c.evals = ml_collections.ConfigDict({
        'recon': {**common.image_eval(('img',)), 'pred': ('recon',)},
        'gen_recon': {**common.image_eval(('generator',)),
                      'pred': ('gen_recon',)},
        'cost': common.cost_eval(2, 2)})
  elif preset == 'paper':
    c.data = ml_collections.ConfigDict({
        'name': 'tfds', 'train_split': 'train', 'test_split': 'test',
        'batch_size': 16, 'seed': 0, 'flip': True, 'jitter': 0,
        'args': {'tfds_name': 'celeb_a', 'keys': {'img': 'image'},
                 'resolution': 128, 'channels': 3, 'data_dir': '',
                 'limit': -1},
        'train_limit': 0, 'test_limit': 0,
        **common.input_options()})
    c.generator.update(z_dim=512, w_dim=512, map_layers=8, ch_base=8192,
                       ch_max=256)
    c.dls.buffer = 512
    c.disc.update(ch_base=8192, ch_max=256)
    c.optim.epoch_steps = 162_770 // 16
    c.total_steps = 50 * c.optim.epoch_steps
    c.log_every = 500
    c.ckpt_every = 5000
    c.evals = evals(limit=1000, fid_limit=10_000)
  return c

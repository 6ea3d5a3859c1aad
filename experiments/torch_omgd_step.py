"""OMGD's pix2pix online-distillation train step in eager PyTorch (CPU).

The PyTorch reference for ``experiments/bench_vem_step.py --breakdown
--mi=none``: the same computation as one gcjax ``omgd`` pix2pix train step
with ``configs/pix2pix_omgd.py:paper`` and ``mi.kind='none'``
(``gcjax.methods.omgd.pix2pix.train_step`` + ``gcjax.recipes.distill.
student_update``), written with torch modules, timed in the same sitting.
Imports torch and numpy only (the side virtual environment of
``scripts/setup.sh``); gcjax never imports it.

What one ``step()`` computes, each line the gcjax piece it mirrors:

1. wide teacher (U-Net ngf 64, dropout 0.5) and deep teacher (ngf 16, 2
   ``BottleneckRes`` per level, dropout 0.5) forward once in train mode,
   keeping their graphs (gcjax: ``jax.vjp`` of each teacher);
2. PatchGAN (ndf 128, 3 layers, batch norm; one scale, as gcjax's
   ``PatchDiscriminator``) on concat(src, tgt) and on concat(src, each
   detached teacher image); hinge D loss averaged over the two fakes; Adam
   (``adv_lib.d_update``);
3. each teacher: -mean D(concat(src, img)) with the updated D (gradient to
   the image only) + 100 * L1(img, tgt), backward through the kept graph;
   Adam per teacher (``output_update``);
4. student (ngf 16, no dropout) forward in train mode; VGG16 up to relu4_3
   on each detached teacher image (no grad) and on the student image; per
   teacher 10 * (1 - SSIM) + 10 * L1 + 1e4 * Gram-L1 (relu1_2, relu2_2,
   relu3_3, relu4_3) + 10 * L1(relu2_2); plus 1e-5 * summed TV and 10 *
   channel-mean MSE between adapted student maps (1x1 conv -> BN -> ReLU)
   and the wide teacher's maps at down2, down4, up4, up2; one backward;
   Adam on the student and on the adapters (``distill.student_update``);
5. the gradient global norms gcjax logs (D, each teacher, student).

SSIM is pytorch_ssim's (11x11 Gaussian, sigma 1.5, zero padding, C1 =
0.01^2, C2 = 0.03^2) computed as gcjax does, with a separable window on the
five stacked statistics. VGG16 has random weights (timing only). Adam
with a constant learning rate (gcjax's schedule is constant for the first
half of the paper run). ``--tiny`` is ``bench_accel.make_config(tiny=True)``
(ngf 4 / 2 / 2, ndf 4 with 1 layer, feature maps down1, up1).

Usage (the side interpreter):
  /tmp/torchvenv/bin/python experiments/torch_omgd_step.py [--res 256]
      [--batch 4] [--steps 3] [--threads 2] [--tiny] [--parts]
Prints one JSON object: step_s_median, step_s, steps, first_s, torch,
threads, res, batch, tiny, peak_rss_mb, loss metrics of the last step and,
with ``--parts``, each network's forward+backward time (``parts``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_generators as tg  # noqa: E402  (sibling module, torch only)

PAPER = dict(teacher_ngf=64, deep_ngf=16, deep_res=2, student_ngf=16,
             ndf=128, n_layers=3, dropout=0.5,
             feature_layers=('down2', 'down4', 'up4', 'up2'))
TINY = dict(PAPER, teacher_ngf=4, deep_ngf=2, student_ngf=2, ndf=4,
            n_layers=1, feature_layers=('down1', 'up1'))
# Student loss weights and the teachers' lambda_L1 (configs/pix2pix_omgd.py).
W = dict(ssim=10.0, l1=10.0, style=1e4, perceptual=10.0, tv=1e-5,
         feature=10.0, lambda_l1=100.0)
STYLE_LAYERS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')
VGG_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512))
# (2 * ImageNet mean - 1, 2 * std): [-1, 1] images to ImageNet statistics.
VGG_SHIFT = (-0.030, -0.088, -0.188)
VGG_SCALE = (0.458, 0.448, 0.450)
ADAM = dict(lr=2e-4, betas=(0.5, 0.999))


class PatchGAN(nn.Module):
  """pix2pix ``NLayerDiscriminator`` as gcjax's ``PatchDiscriminator``
  (modules named as its Flax ones)."""

  def __init__(self, in_ch, ndf, n_layers):
    super().__init__()
    self.n = n_layers
    self.conv0 = nn.Conv2d(in_ch, ndf, 4, 2, 1)
    c = ndf
    for i in range(1, n_layers + 1):
      c_out = ndf * min(2**i, 8)
      setattr(self, f'conv{i}', nn.Conv2d(c, c_out, 4,
                                          2 if i < n_layers else 1, 1,
                                          bias=False))
      setattr(self, f'norm{i}', nn.BatchNorm2d(c_out))
      c = c_out
    setattr(self, f'conv{n_layers + 1}', nn.Conv2d(c, 1, 4, 1, 1))

  def forward(self, x):
    h = F.leaky_relu(self.conv0(x), 0.2)
    for i in range(1, self.n + 1):
      h = F.leaky_relu(getattr(self, f'norm{i}')(
          getattr(self, f'conv{i}')(h)), 0.2)
    return getattr(self, f'conv{self.n + 1}')(h)


class VGG16(nn.Module):
  """torchvision VGG16 ``features`` up to relu4_3 (random weights)."""

  def __init__(self):
    super().__init__()
    self.convs = nn.ModuleList()
    self.names = []
    c = 3
    for b, widths in enumerate(VGG_BLOCKS):
      for i, w in enumerate(widths):
        self.convs.append(nn.Conv2d(c, w, 3, padding=1))
        self.names.append(f'relu{b + 1}_{i + 1}')
        c = w
    self.register_buffer('shift', torch.tensor(VGG_SHIFT).view(1, 3, 1, 1))
    self.register_buffer('scale', torch.tensor(VGG_SCALE).view(1, 3, 1, 1))

  def forward(self, x, layers):
    if x.shape[1] == 1:
      x = x.expand(-1, 3, -1, -1)
    h, out, last = (x - self.shift) / self.scale, {}, max(
        self.names.index(n) for n in layers)
    for k, (conv, name) in enumerate(zip(self.convs, self.names)):
      if k > 0 and name.endswith('_1'):
        h = F.max_pool2d(h, 2)
      h = F.relu(conv(h))
      if name in layers:
        out[name] = h
      if k == last:
        return out
    return out


class Adapter(nn.Module):
  """OMGD's connector: 1x1 conv (no bias) -> batch norm -> ReLU."""

  def __init__(self, c_in, c_out):
    super().__init__()
    self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)
    nn.init.kaiming_normal_(self.conv.weight, mode='fan_out')
    self.norm = nn.BatchNorm2d(c_out)

  def forward(self, x):
    return F.relu(self.norm(self.conv(x)))


def _pix2pix_init(module):
  """N(0, 0.02) conv weights, N(1, 0.02) batch-norm scales, zero biases."""
  for m in module.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
      nn.init.normal_(m.weight, 0.0, 0.02)
      if m.bias is not None:
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.normal_(m.weight, 1.0, 0.02)
      nn.init.zeros_(m.bias)


def _gaussian(size=11, sigma=1.5):
  x = torch.arange(size, dtype=torch.float32) - size // 2
  g = torch.exp(-x**2 / (2 * sigma**2))
  return g / g.sum()


def ssim_loss(x, y, g):
  """1 - pytorch_ssim's SSIM (zero padding, C1 = 0.01^2, C2 = 0.03^2)."""
  c = x.shape[1]
  stats = torch.cat([x, y, x * x, y * y, x * y], 1)
  k, p = g.numel(), g.numel() // 2
  stats = F.conv2d(stats, g.view(1, 1, k, 1).expand(5 * c, 1, k, 1),
                   padding=(p, 0), groups=5 * c)
  stats = F.conv2d(stats, g.view(1, 1, 1, k).expand(5 * c, 1, 1, k),
                   padding=(0, p), groups=5 * c)
  mx, my, exx, eyy, exy = stats.split(c, 1)
  c1, c2 = 0.01**2, 0.03**2
  num = (2 * mx * my + c1) * (2 * (exy - mx * my) + c2)
  den = (mx * mx + my * my + c1) * (exx - mx * mx + eyy - my * my + c2)
  return 1.0 - (num / den).mean()


def gram(f):
  b, c, h, w = f.shape
  flat = f.reshape(b, c, h * w)
  return torch.bmm(flat, flat.transpose(1, 2)) / (h * w * c)


def total_variation_sum(x):
  return ((x[:, :, 1:] - x[:, :, :-1]).abs().sum()
          + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().sum())


def peak_rss_mb() -> float:
  """This process's peak resident memory (VmHWM: not the pre-exec parent's
  high-water mark that ``ru_maxrss`` keeps across exec)."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def grad_norm(params):
  grads = [p.grad for p in params if p.grad is not None]
  return torch.linalg.vector_norm(
      torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class OMGDStep:
  """Networks, optimizers and a fixed random batch; ``step()`` trains once.

  Args:
    res: image side (a power of two).
    batch: batch size.
    channels: image channels (src and tgt).
    tiny: the test suite's tiny networks instead of the paper's.
    seed: weights, dropout and data seed.
  """

  def __init__(self, res, batch, channels=3, tiny=False, seed=0):
    torch.manual_seed(seed)
    a = TINY if tiny else PAPER
    n = int(math.log2(res))
    if 2**n != res:
      raise ValueError(f'--res must be a power of two, got {res}')
    self.teachers = [
        tg.UNet(a['teacher_ngf'], n, channels, channels,
                dropout=a['dropout']),
        tg.UNet(a['deep_ngf'], n, channels, channels, n_res=a['deep_res'],
                dropout=a['dropout'])]
    self.student = tg.UNet(a['student_ngf'], n, channels, channels)
    self.disc = PatchGAN(2 * channels, a['ndf'], a['n_layers'])
    for m in (*self.teachers, self.student, self.disc):
      _pix2pix_init(m)
    self.layers = a['feature_layers']
    src = torch.rand(batch, channels, res, res) * 2 - 1
    tgt = torch.rand(batch, channels, res, res) * 2 - 1
    self.src, self.tgt = src, tgt
    with torch.no_grad():   # widths of the distilled maps
      _, s_f = self.student.eval().forward_features(src[:1])
      _, t_f = self.teachers[0].eval().forward_features(src[:1])
    self.adapt = nn.ModuleList(Adapter(s_f[k].shape[1], t_f[k].shape[1])
                               for k in self.layers)
    self.vgg = VGG16().requires_grad_(False)
    self.vgg_layers = tuple(dict.fromkeys((*STYLE_LAYERS, 'relu2_2')))
    self.window = _gaussian()
    for m in (*self.teachers, self.student, self.disc, self.adapt):
      m.train()
    self.opt_t = [torch.optim.Adam(t.parameters(), **ADAM)
                  for t in self.teachers]
    self.opt_d = torch.optim.Adam(self.disc.parameters(), **ADAM)
    self.opt_s = torch.optim.Adam(self.student.parameters(), **ADAM)
    self.opt_a = torch.optim.Adam(self.adapt.parameters(), **ADAM)

  def step(self) -> dict:
    """One train step; returns its losses and gradient norms (floats)."""
    src, tgt, m = self.src, self.tgt, {}
    # 1. Teachers forward once (graphs kept for their own updates).
    t_out, t_feats = zip(*(t.forward_features(src) for t in self.teachers))
    # 2. D update: real + each detached teacher image, hinge, fakes averaged.
    self.disc.requires_grad_(True)
    real = self.disc(torch.cat([src, tgt], 1))
    d_losses = [F.relu(1 - real).mean() + F.relu(
        1 + self.disc(torch.cat([src, x.detach()], 1))).mean() for x in t_out]
    d_loss = sum(d_losses) / len(d_losses)
    self.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    m['d/loss'], m['d/grad_norm'] = d_loss, grad_norm(self.disc.parameters())
    self.opt_d.step()
    # 3. Teachers: hinge G loss against the updated D + lambda_l1 * L1.
    self.disc.requires_grad_(False)
    g_loss = 0.0
    for i, x in enumerate(t_out):
      adv = -self.disc(torch.cat([src, x], 1)).mean()
      l1 = (x - tgt).abs().mean()
      m[f't{i}/loss'] = adv + W['lambda_l1'] * l1
      g_loss = g_loss + m[f't{i}/loss']
    for opt in self.opt_t:
      opt.zero_grad(set_to_none=True)
    g_loss.backward()
    for i, (t, opt) in enumerate(zip(self.teachers, self.opt_t)):
      m[f't{i}/grad_norm'] = grad_norm(t.parameters())
      opt.step()
    # 4. Student from the (detached) teachers; adapters on the wide one.
    s_img, s_feats = self.student.forward_features(src)
    with torch.no_grad():
      t_vgg = [self.vgg(x.detach(), self.vgg_layers) for x in t_out]
    s_vgg = self.vgg(s_img, self.vgg_layers)
    total = 0.0
    for k, x in enumerate(t_out):
      x = x.detach()
      parts = {
          'ssim': ssim_loss(s_img, x, self.window),
          'l1': (s_img - x).abs().mean(),
          'style': sum((gram(s_vgg[n]) - gram(t_vgg[k][n])).abs().mean()
                       for n in STYLE_LAYERS),
          'perceptual': (s_vgg['relu2_2'] - t_vgg[k]['relu2_2']).abs().mean()}
      for name, v in parts.items():
        total = total + W[name] * v
        m[f's/{name}{k}'] = v
    tv = total_variation_sum(s_img)
    feat = sum(((a(s_feats[n]).mean((2, 3))
                 - t_feats[0][n].detach().mean((2, 3)))**2).mean()
               for a, n in zip(self.adapt, self.layers))
    total = total + W['tv'] * tv + W['feature'] * feat
    m.update({'s/tv': tv, 's/feature': feat, 's/loss': total})
    self.opt_s.zero_grad(set_to_none=True)
    self.opt_a.zero_grad(set_to_none=True)
    total.backward()
    m['s/grad_norm'] = grad_norm(self.student.parameters())
    self.opt_s.step()
    self.opt_a.step()
    return {k: float(v.detach()) for k, v in m.items()}

  def parts(self, reps) -> dict:
    """Median seconds of each network's passes at the step's shapes."""
    src, tgt = self.src, self.tgt
    pair = torch.cat([src, tgt], 1)

    def gen(net):
      def fn():
        net.zero_grad(set_to_none=True)
        net(src).mean().backward()
      return fn

    def disc_params():
      self.disc.requires_grad_(True)
      self.disc.zero_grad(set_to_none=True)
      self.disc(pair).mean().backward()

    def disc_input():
      self.disc.requires_grad_(False)
      x = pair.clone().requires_grad_(True)
      torch.autograd.grad(self.disc(x).mean(), x)

    def vgg_fwd():
      with torch.no_grad():
        self.vgg(tgt, self.vgg_layers)

    def vgg_bwd():
      x = tgt.clone().requires_grad_(True)
      out = self.vgg(x, self.vgg_layers)
      torch.autograd.grad(sum(v.mean() for v in out.values()), x)
    fns = {'teacher (wide) fwd+bwd': gen(self.teachers[0]),
           'teacher (deep) fwd+bwd': gen(self.teachers[1]),
           'student fwd+bwd': gen(self.student),
           'discriminator fwd+bwd to params': disc_params,
           'discriminator fwd+bwd to input': disc_input,
           'VGG16 fwd': vgg_fwd, 'VGG16 fwd+bwd to input': vgg_bwd}
    out = {}
    for name, fn in fns.items():
      fn()
      ts = []
      for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
      out[name] = float(np.median(ts))
    return out


def check_record(path) -> None:
  """Writes ``path`` (.npz): inputs, weights and torch outputs of the step's
  pieces at tiny shapes, for a parity test against gcjax
  (``tests/torch_omgd_step_test.py``).

  Keys: ``x``, ``y`` [2, 3, 16, 16] images, ``fs``, ``ft`` [2, 8, 4, 4] maps,
  ``term/<name>`` loss values, and per network ``<net>/sd/<key>`` (state
  dict), ``<net>/transposed`` and ``<net>/out_<mode>`` (eval, train) for
  ``deep`` (U-Net ngf 2, 2 residual blocks per level), ``disc`` (PatchGAN
  ndf 4, 2 layers, on concat(x, y)) and ``vgg`` (relu<k> maps of x).
  """
  torch.manual_seed(0)
  rec = {}
  x, y = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
  fs, ft = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
  logits_r, logits_f = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
  terms = {
      'ssim': ssim_loss(x, y, _gaussian()),
      'style': (gram(fs) - gram(ft)).abs().mean(),
      'tv_sum': total_variation_sum(x),
      'feature': ((fs.mean((2, 3)) - ft.mean((2, 3)))**2).mean(),
      'hinge_d': F.relu(1 - logits_r).mean() + F.relu(1 + logits_f).mean(),
      'hinge_g': -logits_f.mean()}
  rec.update(x=x, y=y, fs=fs, ft=ft, logits_r=logits_r, logits_f=logits_f,
             **{f'term/{k}': v for k, v in terms.items()})
  nets = {'deep': (tg.UNet(2, 4, 3, 3, n_res=2), x),
          'disc': (PatchGAN(6, 4, 2), torch.cat([x, y], 1))}
  for name, (net, inp) in nets.items():
    _pix2pix_init(net)
    for m in net.modules():   # non-trivial running statistics
      if isinstance(m, nn.BatchNorm2d):
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
    rec.update({f'{name}/sd/{k}': v.clone() for k, v in net.state_dict().items()
                if not k.endswith('num_batches_tracked')})
    rec[f'{name}/transposed'] = np.array(
        [k for k, m in net.named_modules()
         if isinstance(m, nn.ConvTranspose2d)], dtype=str)
    with torch.no_grad():
      rec[f'{name}/out_eval'] = net.eval()(inp)
      rec[f'{name}/out_train'] = net.train()(inp)
  vgg = VGG16()
  for k, conv in enumerate(vgg.convs):
    rec[f'vgg/sd/{vgg.names[k]}.weight'] = conv.weight
    rec[f'vgg/sd/{vgg.names[k]}.bias'] = conv.bias
  with torch.no_grad():
    for n, v in vgg(x, STYLE_LAYERS).items():
      rec[f'vgg/{n}'] = v
  np.savez(path, **{k: v.detach().numpy() if torch.is_tensor(v) else v
                    for k, v in rec.items()})


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--res', type=int, default=None,
                 help='image side (default 256, 16 with --tiny)')
  p.add_argument('--batch', type=int, default=4)
  p.add_argument('--channels', type=int, default=3)
  p.add_argument('--steps', type=int, default=3,
                 help='timed steps after the first one')
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--tiny', action='store_true')
  p.add_argument('--parts', action='store_true',
                 help='also time each network pass (median of --steps)')
  p.add_argument('--keep_denormals', action='store_true',
                 help='do not flush denormals to zero (XLA:CPU flushes them)')
  p.add_argument('--check_out', default='',
                 help='only write the parity record (.npz) to this path')
  args = p.parse_args(argv)
  if args.check_out:
    check_record(args.check_out)
    return {}
  res = args.res or (16 if args.tiny else 256)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  from gcjax import hostmem  # stdlib only: gcjax's allocator policy
  if os.environ.get(hostmem.ENV) == '1':   # set by bench_vem_step
    hostmem.keep_freed_memory()
  torch.set_num_threads(args.threads)
  flush = torch.set_flush_denormal(not args.keep_denormals)
  s = OMGDStep(res, args.batch, args.channels, tiny=args.tiny)
  t0 = time.perf_counter()
  metrics = s.step()
  first = time.perf_counter() - t0
  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    metrics = s.step()
    times.append(time.perf_counter() - t0)
  out = dict(step_s_median=float(np.median(times)) if times else first,
             step_s=times, steps=args.steps, first_s=first,
             torch=torch.__version__, threads=torch.get_num_threads(),
             res=res, batch=args.batch, channels=args.channels,
             tiny=args.tiny, flush_denormal=flush and not args.keep_denormals,
             metrics=metrics)
  if args.parts:
    out['parts'] = s.parts(max(1, args.steps))
  out['peak_rss_mb'] = peak_rss_mb()
  print(json.dumps(out))
  return out


if __name__ == '__main__':
  main()

"""PyTorch definitions of gcjax's generators (for fixtures and benchmarks).

Imports torch and numpy only: it runs in the side virtual environment with
the CPU torch wheel (``python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip
install torch numpy``), never in gcjax's own.

* ``Resnet`` / ``dcgan``: the vintagify CycleGAN ResNet and the face DCGAN in
  their published ``nn.Sequential`` layouts (state-dict keys as the shipped
  weight files), read by ``gcjax.convert.resnet_from_torch`` and
  ``dcgan_from_torch``.
* ``UNet``, ``MobileResnet``, ``StyleGenerator``: pix2pix's ``unet_256``
  (and OMGD's deep variant with residual blocks), GAN-Compression's mobile ResNet and gcjax's
  style-based generator, with modules named as gcjax's Flax modules
  (``down0_conv``, ``block0.sep1.dw``, ``mapping.dense0``, ...), so that a
  state dict maps to Flax variables by name (``bench_vs_pytorch``).

All take and return NCHW float32 tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


class Block(nn.Module):
  """CycleGAN residual block (affine instance norm, reflection padding)."""

  def __init__(self, c):
    super().__init__()
    self.block = nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3),
        nn.InstanceNorm2d(c, affine=True), nn.ReLU(),
        nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3),
        nn.InstanceNorm2d(c, affine=True))

  def forward(self, x):
    return x + self.block(x)


class Resnet(nn.Module):
  """CycleGAN ``resnet_9blocks`` as vintagify ships it (``model.N`` keys)."""

  def __init__(self, ngf=64, n_blocks=9):
    super().__init__()
    m = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7),
         nn.InstanceNorm2d(ngf, affine=True), nn.ReLU()]
    for i in range(2):
      c = ngf * 2**i
      m += [nn.Conv2d(c, 2 * c, 3, 2, 1),
            nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU()]
    m += [Block(4 * ngf) for _ in range(n_blocks)]
    for i in range(2):
      c = ngf * 4 // 2**i
      m += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1),
            nn.InstanceNorm2d(c // 2, affine=True), nn.ReLU()]
    m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
    self.model = nn.Sequential(*m)

  def forward(self, x):
    return self.model(x)


class _DCGAN(nn.Module):

  def __init__(self, nz=100, d=64):
    super().__init__()
    m = []
    widths = [nz, 8 * d, 4 * d, 2 * d, d]
    for i in range(4):
      m += [nn.ConvTranspose2d(widths[i], widths[i + 1], 4,
                               1 if i == 0 else 2, 0 if i == 0 else 1,
                               bias=False),
            nn.BatchNorm2d(widths[i + 1]), nn.ReLU()]
    m += [nn.ConvTranspose2d(d, 3, 4, 2, 1, bias=False), nn.Tanh()]
    self.main = nn.Sequential(*m)

  def forward(self, z):
    return self.main(z[:, :, None, None])


def dcgan(nz=100, d=64) -> nn.Module:
  """The PyTorch DCGAN tutorial generator (64x64; ``main.N`` keys); its
  forward takes z [B, nz]."""
  return _DCGAN(nz, d)


class BottleneckRes(nn.Module):
  """OMGD's U-Net residual block (gcjax ``unet.BottleneckResBlock``).

  reflect-pad 1 -> 1x1 (C -> 4C) -> BN -> ReLU -> 3x3 valid (4C) -> BN ->
  ReLU -> 1x1 (4C -> C) -> BN -> ReLU -> reflect-pad 1 -> 3x3 valid (C) ->
  BN, plus the identity; convs without bias (batch norm follows).
  """

  def __init__(self, c):
    super().__init__()
    self.conv1 = nn.Conv2d(c, 4 * c, 1, bias=False)
    self.norm1 = nn.BatchNorm2d(4 * c)
    self.conv2 = nn.Conv2d(4 * c, 4 * c, 3, bias=False)
    self.norm2 = nn.BatchNorm2d(4 * c)
    self.conv3 = nn.Conv2d(4 * c, c, 1, bias=False)
    self.norm3 = nn.BatchNorm2d(c)
    self.conv4 = nn.Conv2d(c, c, 3, bias=False)
    self.norm4 = nn.BatchNorm2d(c)

  def forward(self, x):
    h = F.relu(self.norm1(self.conv1(F.pad(x, (1,) * 4, 'reflect'))))
    h = F.relu(self.norm2(self.conv2(h)))
    h = F.relu(self.norm3(self.conv3(h)))
    return x + self.norm4(self.conv4(F.pad(h, (1,) * 4, 'reflect')))


class UNet(nn.Module):
  """pix2pix ``unet_256`` (batch norm), gcjax names; OMGD's deep variant
  with ``n_res`` > 0.

  Level i encodes with ``down{i}_conv`` (4x4 s2) and decodes with
  ``up{i}_conv`` (4x4 s2 transposed); decoder level i > 0 output is
  concatenated after the skip (lrelu of the encoder output of level i - 1).
  ``n_res`` residual blocks (``down{i}_res{j}``, ``up{i}_res{j}``) sit where
  gcjax's ``UNetGenerator`` puts them; ``dropout`` acts on the ngf * 8
  decoder levels 4 .. n - 2 in train mode (0: none, as at inference).
  ``forward_features`` also returns gcjax's ``down{i}`` / ``up{i}`` maps.
  """

  def __init__(self, ngf=64, num_downs=8, in_ch=3, out_ch=3, n_res=0,
               dropout=0.0):
    super().__init__()
    n = self.n = num_downs
    self.n_res, self.dropout = n_res, dropout
    ch = [ngf * min(2**i, 8) for i in range(n)]
    up = ch[:n - 1]
    for i in range(n):
      cin = in_ch if i == 0 else ch[i - 1]
      setattr(self, f'down{i}_conv', nn.Conv2d(cin, ch[i], 4, 2, 1,
                                               bias=False))
      if 0 < i < n - 1:
        setattr(self, f'down{i}_norm', nn.BatchNorm2d(ch[i]))
      cin = ch[i] if i == n - 1 else ch[i] + up[i]
      cout = out_ch if i == 0 else up[i - 1]
      setattr(self, f'up{i}_conv', nn.ConvTranspose2d(cin, cout, 4, 2, 1,
                                                      bias=i == 0))
      if i > 0:
        setattr(self, f'up{i}_norm', nn.BatchNorm2d(cout))
      for j in range(n_res):
        if i < n - 1:
          setattr(self, f'down{i}_res{j}', BottleneckRes(ch[i]))
        if i == 0:
          setattr(self, f'up{i}_res{j}', BottleneckRes(cin))
        elif i < n - 1:
          setattr(self, f'up{i}_res{j}', BottleneckRes(cout))

  def _res(self, h, name):
    for j in range(self.n_res):
      h = getattr(self, f'{name}_res{j}')(h)
    return h

  def forward_features(self, x):
    """x [B, C, H, W] -> (image, {'down{i}' | 'up{i}': map})."""
    h, skips, feats = x, [], {}
    for i in range(self.n):
      if i > 0:
        h = F.leaky_relu(h, 0.2)
        skips.append(h)
      h = getattr(self, f'down{i}_conv')(h)
      if 0 < i < self.n - 1:
        h = getattr(self, f'down{i}_norm')(h)
      if i < self.n - 1:
        h = self._res(h, f'down{i}')
      feats[f'down{i}'] = h
    for i in reversed(range(self.n)):
      if i == 0:
        h = self._res(h, 'up0')
      h = getattr(self, f'up{i}_conv')(F.relu(h))
      if i > 0:
        h = getattr(self, f'up{i}_norm')(h)
        if i < self.n - 1:
          h = self._res(h, f'up{i}')
        if 4 <= i < self.n - 1 and self.dropout > 0:
          h = F.dropout(h, self.dropout, self.training)
      feats[f'up{i}'] = h
      if i > 0:
        h = torch.cat([skips[i - 1], h], 1)
    return torch.tanh(h), feats

  def forward(self, x):
    return self.forward_features(x)[0]


class SeparableConv(nn.Module):
  """Depthwise kxk (bias) -> instance norm -> pointwise 1x1 (bias)."""

  def __init__(self, c, k=3):
    super().__init__()
    self.dw = nn.Conv2d(c, c, k, groups=c)
    self.norm = nn.InstanceNorm2d(c)
    self.pw = nn.Conv2d(c, c, 1)

  def forward(self, x):
    return self.pw(self.norm(self.dw(x)))


class MobileBlock(nn.Module):

  def __init__(self, c):
    super().__init__()
    self.sep1, self.sep2 = SeparableConv(c), SeparableConv(c)

  def forward(self, x):
    h = F.relu(F.instance_norm(self.sep1(F.pad(x, (1,) * 4, 'reflect'))))
    h = F.instance_norm(self.sep2(F.pad(h, (1,) * 4, 'reflect')))
    return x + h


class MobileResnet(nn.Module):
  """GAN-Compression's mobile ResNet generator (instance norm, no affine)."""

  def __init__(self, ngf=16, n_blocks=9):
    super().__init__()
    self.stem_conv = nn.Conv2d(3, ngf, 7)
    for i in range(2):
      c = ngf * 2**i
      setattr(self, f'down{i}_conv', nn.Conv2d(c, 2 * c, 3, 2, 1))
    self.n_blocks = n_blocks
    for i in range(n_blocks):
      setattr(self, f'block{i}', MobileBlock(4 * ngf))
    for i in range(2):
      c = ngf * 4 // 2**i
      setattr(self, f'up{i}_conv', nn.ConvTranspose2d(c, c // 2, 3, 2, 1,
                                                      output_padding=1))
    self.out_conv = nn.Conv2d(ngf, 3, 7)

  def forward(self, x):
    h = F.relu(F.instance_norm(self.stem_conv(F.pad(x, (3,) * 4, 'reflect'))))
    for i in range(2):
      h = F.relu(F.instance_norm(getattr(self, f'down{i}_conv')(h)))
    for i in range(self.n_blocks):
      h = getattr(self, f'block{i}')(h)
    for i in range(2):
      h = F.relu(F.instance_norm(getattr(self, f'up{i}_conv')(h)))
    return torch.tanh(self.out_conv(F.pad(h, (3,) * 4, 'reflect')))


def _lrelu(x):
  return F.leaky_relu(x, 0.2) * SQRT2


def _up2(x):
  return F.interpolate(x, scale_factor=2, mode='bilinear',
                       align_corners=False)


class EqualDense(nn.Module):

  def __init__(self, cin, cout, bias_init=0.0):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(cout, cin))
    self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
    self.scale = 1 / math.sqrt(cin)

  def forward(self, x):
    return F.linear(x, self.weight * self.scale, self.bias)


class ModulatedConv(nn.Module):
  """StyleGAN2's modulated conv (input scaled by the style, demodulated)."""

  def __init__(self, cin, cout, w_dim, k, demodulate=True, up=False):
    super().__init__()
    self.affine = EqualDense(w_dim, cin, bias_init=1.0)
    self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
    self.scale, self.k = 1 / math.sqrt(k * k * cin), k
    self.demodulate, self.up = demodulate, up

  def forward(self, x, w):
    style = self.affine(w)
    weight = self.weight * self.scale
    if self.up:
      x = _up2(x)
    y = F.conv2d(x * style[:, :, None, None], weight, padding=self.k // 2)
    if self.demodulate:
      power = style.square() @ weight.square().sum((2, 3)).t()
      y = y * torch.rsqrt(power + 1e-8)[:, :, None, None]
    return y


class StyleLayer(nn.Module):

  def __init__(self, cin, cout, w_dim, up=False):
    super().__init__()
    self.conv = ModulatedConv(cin, cout, w_dim, 3, up=up)
    self.bias = nn.Parameter(torch.zeros(cout))

  def forward(self, x, w):
    return _lrelu(self.conv(x, w) + self.bias[None, :, None, None])


class ToRGB(nn.Module):

  def __init__(self, cin, out_ch, w_dim):
    super().__init__()
    self.conv = ModulatedConv(cin, out_ch, w_dim, 1, demodulate=False)
    self.bias = nn.Parameter(torch.zeros(out_ch))

  def forward(self, x, w):
    return self.conv(x, w) + self.bias[None, :, None, None]


class Mapping(nn.Module):

  def __init__(self, z_dim, w_dim, n_layers):
    super().__init__()
    self.n = n_layers
    for i in range(n_layers):
      setattr(self, f'dense{i}', EqualDense(z_dim if i == 0 else w_dim,
                                            w_dim))

  def forward(self, z):
    for i in range(self.n):
      z = _lrelu(getattr(self, f'dense{i}')(z))
    return z


class StyleGenerator(nn.Module):
  """gcjax's ``StyleGenerator`` (one w for every layer); forward takes z."""

  def __init__(self, z_dim=512, w_dim=512, map_layers=8, resolution=128,
               out_ch=3, ch_base=8192, ch_max=256):
    super().__init__()

    def ch(r):
      return max(1, min(ch_base // r, ch_max))

    self.mapping = Mapping(z_dim, w_dim, map_layers)
    self.const = nn.Parameter(torch.randn(ch(4), 4, 4))
    self.conv4 = StyleLayer(ch(4), ch(4), w_dim)
    self.rgb4 = ToRGB(ch(4), out_ch, w_dim)
    self.res = [8 * 2**i for i in range(int(math.log2(resolution)) - 2)]
    for r in self.res:
      setattr(self, f'conv{r}_up', StyleLayer(ch(r // 2), ch(r), w_dim,
                                              up=True))
      setattr(self, f'conv{r}', StyleLayer(ch(r), ch(r), w_dim))
      setattr(self, f'rgb{r}', ToRGB(ch(r), out_ch, w_dim))

  def forward(self, z):
    w = self.mapping(z)
    x = self.conv4(self.const.expand(z.shape[0], -1, -1, -1), w)
    img = self.rgb4(x, w)
    for r in self.res:
      x = getattr(self, f'conv{r}')(getattr(self, f'conv{r}_up')(x, w), w)
      img = _up2(img) + getattr(self, f'rgb{r}')(x, w)
    return img

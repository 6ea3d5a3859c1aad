"""PyTorch peers of the benchmarked generators, exported with torch.onnx.

Run by ``experiments/bench_deploy.py`` in a side interpreter that has CPU
torch and onnx (it never imports gcjax or JAX):

  /tmp/torchvenv/bin/python experiments/torch_deploy_models.py OUT_DIR \\
      --res=256 --batches=1,8 --models=unet64,unet16,mobile16

Writes ``OUT_DIR/<model>_b<batch>.onnx`` (input ``input`` NCHW float32,
output ``output``) and ``OUT_DIR/params.json`` (parameter counts). The
definitions follow the layouts of pix2pix's ``UnetGenerator`` (batch norm,
no conv bias before it, dropout off in eval) and GAN-Compression / OMGD's
``MobileResnetGenerator`` (instance norm without affine, depthwise-separable
residual blocks), the same architectures as ``gcjax.models.unet`` and
``gcjax.models.resnet``; weights are random (speed does not depend on
them). Exported in eval mode with the TorchScript exporter, opset 17,
constant folding on (batch norm folds into the convs, as PyTorch users
ship it).
"""

from __future__ import annotations

import argparse
import json
import math
import os

import torch
from torch import nn


class UNet(nn.Module):
  """pix2pix ``unet_256`` (``num_downs`` levels, batch norm)."""

  def __init__(self, ngf: int, num_downs: int = 8, in_ch: int = 3,
               out_ch: int = 3):
    super().__init__()
    ch = [ngf * min(2**i, 8) for i in range(num_downs)]
    self.n = num_downs
    self.down = nn.ModuleList()
    self.dnorm = nn.ModuleList()
    for i in range(num_downs):
      cin = in_ch if i == 0 else ch[i - 1]
      self.down.append(nn.Conv2d(cin, ch[i], 4, 2, 1, bias=False))
      self.dnorm.append(nn.BatchNorm2d(ch[i]) if 0 < i < num_downs - 1
                        else nn.Identity())
    self.up = nn.ModuleList()
    self.unorm = nn.ModuleList()
    for i in range(num_downs):
      cin = ch[i] if i == num_downs - 1 else 2 * ch[i]
      cout = out_ch if i == 0 else ch[i - 1]
      self.up.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=i == 0))
      self.unorm.append(nn.BatchNorm2d(cout) if i > 0 else nn.Identity())

  def forward(self, x):
    h, skips = x, []
    for i in range(self.n):
      if i > 0:
        h = nn.functional.leaky_relu(h, 0.2)
        skips.append(h)
      h = self.dnorm[i](self.down[i](h))
    for i in reversed(range(self.n)):
      if i < self.n - 1:
        h = torch.cat([skips[i], h], 1)
      h = self.unorm[i](self.up[i](torch.relu(h)))
    return torch.tanh(h)


class SeparableConv(nn.Module):

  def __init__(self, c: int):
    super().__init__()
    self.dw = nn.Conv2d(c, c, 3, groups=c)
    self.norm = nn.InstanceNorm2d(c)
    self.pw = nn.Conv2d(c, c, 1)

  def forward(self, x):
    return self.pw(self.norm(self.dw(x)))


class MobileBlock(nn.Module):

  def __init__(self, c: int):
    super().__init__()
    self.body = nn.Sequential(
        nn.ReflectionPad2d(1), SeparableConv(c), nn.InstanceNorm2d(c),
        nn.ReLU(), nn.ReflectionPad2d(1), SeparableConv(c),
        nn.InstanceNorm2d(c))

  def forward(self, x):
    return x + self.body(x)


def mobile_resnet(ngf: int, n_blocks: int = 9, in_ch: int = 3,
                  out_ch: int = 3) -> nn.Module:
  """GAN-Compression's ``MobileResnetGenerator`` (instance norm)."""
  layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7),
            nn.InstanceNorm2d(ngf), nn.ReLU()]
  for i in range(2):
    c = ngf * 2**i
    layers += [nn.Conv2d(c, 2 * c, 3, 2, 1), nn.InstanceNorm2d(2 * c),
               nn.ReLU()]
  layers += [MobileBlock(4 * ngf) for _ in range(n_blocks)]
  for i in range(2):
    c = ngf * 2**(2 - i)
    layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1),
               nn.InstanceNorm2d(c // 2), nn.ReLU()]
  layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
  return nn.Sequential(*layers)


MODELS = {   # name: res -> module (the U-Net goes down to 1x1, as gcjax's)
    'unet64': lambda res: UNet(64, int(math.log2(res))),
    'unet16': lambda res: UNet(16, int(math.log2(res))),
    'mobile16': lambda res: mobile_resnet(16),
    'mobile64': lambda res: mobile_resnet(64)}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('out')
  p.add_argument('--res', type=int, default=256)
  p.add_argument('--batches', default='1,8')
  p.add_argument('--models', default='unet64,unet16,mobile16')
  a = p.parse_args()
  os.makedirs(a.out, exist_ok=True)
  torch.manual_seed(0)
  params = {}
  for name in a.models.split(','):
    m = MODELS[name](a.res).eval()
    params[name] = sum(t.numel() for t in m.parameters())
    for b in (int(s) for s in a.batches.split(',')):
      x = torch.zeros(b, 3, a.res, a.res)
      with torch.no_grad():
        torch.onnx.export(m, (x,), os.path.join(a.out, f'{name}_b{b}.onnx'),
                          dynamo=False, opset_version=17,
                          input_names=['input'], output_names=['output'],
                          do_constant_folding=True)
  with open(os.path.join(a.out, 'params.json'), 'w') as f:
    json.dump(params, f)


if __name__ == '__main__':
  main()

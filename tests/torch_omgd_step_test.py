"""experiments/torch_omgd_step.py: its pieces compute gcjax's functions on
shared weights and inputs (its whole tiny step runs in
tests/bench_vem_step_test.py, through ``bench_vem_step --mi=none``).

Needs the PyTorch side interpreter that scripts/setup.sh creates
(``GCJAX_TORCH_PYTHON``, default /tmp/torchvenv/bin/python). No timing is
asserted.
"""

import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import bench_vs_pytorch as bvp
from gcjax.models import patchgan, unet, vgg
from gcjax.objectives import adversarial, distill

TORCH_PYTHON = os.environ.get('GCJAX_TORCH_PYTHON',
                              '/tmp/torchvenv/bin/python')
SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                      'experiments', 'torch_omgd_step.py')


def _run(*args):
  out = subprocess.run([TORCH_PYTHON, SCRIPT, *args], check=True,
                       capture_output=True, text=True, timeout=300)
  return out.stdout


@pytest.fixture(scope='module')
def record(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('torch_omgd') / 'check.npz')
  _run(f'--check_out={path}')
  return dict(np.load(path))


def _nhwc(x):
  return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


def test_loss_terms_match_gcjax(record):
  x, y = _nhwc(record['x']), _nhwc(record['y'])
  fs, ft = _nhwc(record['fs']), _nhwc(record['ft'])
  r, f = _nhwc(record['logits_r']), _nhwc(record['logits_f'])
  got = {'ssim': distill.ssim_loss(x, y),
         'style': distill.style_loss([fs], [ft]),
         'tv_sum': distill.total_variation(x, 'sum'),
         'feature': distill.channel_mean_mse(fs, ft),
         'hinge_d': adversarial.gan_d_loss(r, f, 'hinge'),
         'hinge_g': adversarial.gan_g_loss(f, 'hinge')}
  for k, v in got.items():
    assert float(v) == pytest.approx(float(record[f'term/{k}']), rel=1e-5,
                                     abs=1e-7), k


def _sd(record, net):
  pre = f'{net}/sd/'
  return {k[len(pre):]: v for k, v in record.items() if k.startswith(pre)}


@pytest.mark.parametrize('name', ['deep', 'disc'])
def test_networks_match_gcjax(record, name):
  if name == 'deep':   # OMGD's deep teacher at ngf 2 (no dropout levels)
    m = unet.UNetGenerator(ngf=2, out_ch=3, num_downs=4, n_res=2)
    x = _nhwc(record['x'])
  else:
    m = patchgan.PatchDiscriminator(ndf=4, n_layers=2)
    x = jnp.concatenate([_nhwc(record['x']), _nhwc(record['y'])], -1)
  template = jax.eval_shape(
      lambda: m.init({'params': jax.random.key(0),
                      'dropout': jax.random.key(0)}, x))
  v = bvp.flax_from_named(_sd(record, name),
                          set(record[f'{name}/transposed'].tolist()),
                          template)
  outs = {'eval': m.apply(v, x)[0],
          'train': m.apply(v, x, train=True, mutable=['batch_stats'])[0][0]}
  # Train mode: up to 5e-5 apart on ~0.1 outputs, float32 rounding through
  # the deep U-Net's 20+ stacked batch norms on 2x2 maps (Flax takes the
  # variance as E[x^2] - E[x]^2, torch in two passes).
  tol = {'eval': 2e-5, 'train': 1e-4}
  for mode, y in outs.items():
    want = np.transpose(record[f'{name}/out_{mode}'], (0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(y), want, atol=tol[mode],
                               rtol=1e-4, err_msg=f'{name} {mode}')


def test_vgg_matches_gcjax(record):
  sd = _sd(record, 'vgg')
  params = {n.replace('relu', 'conv'): {
      'kernel': np.transpose(sd[f'{n}.weight'], (2, 3, 1, 0)),
      'bias': sd[f'{n}.bias']} for n in vgg.VGG16_LAYERS[:10]}
  layers = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')
  got = vgg.vgg16_features({'params': params}, _nhwc(record['x']), layers)
  for n in layers:
    want = np.transpose(record[f'vgg/{n}'], (0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(got[n]), want, atol=1e-4,
                               rtol=1e-4, err_msg=n)

"""Tests for gcjax.convert: weight layouts and the pretrained teachers.

The reference outputs in tests/fixtures were computed with PyTorch by
scripts/make_model_fixtures.py; these tests need no torch.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from gcjax import convert
from gcjax.models import layers, resnet

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def torch_conv_transpose(x, w, stride, padding, output_padding):
  """PyTorch ConvTranspose2d by its definition (scatter-add), NHWC.

  out[n, i*s - p + a, j*s - p + b, o] += x[n, i, j, c] * w[c, o, a, b].
  """
  n, h, wd, _ = x.shape
  _, co, k, _ = w.shape
  ho = (h - 1) * stride - 2 * padding + k + output_padding
  wo = (wd - 1) * stride - 2 * padding + k + output_padding
  out = np.zeros((n, ho, wo, co))
  for i in range(h):
    for j in range(wd):
      for a in range(k):
        for b in range(k):
          y, z = i * stride - padding + a, j * stride - padding + b
          if 0 <= y < ho and 0 <= z < wo:
            out[:, y, z] += x[:, i, j] @ w[:, :, a, b]
  return out


def torch_conv(x, w, stride, padding):
  """PyTorch Conv2d (cross-correlation, zero padding) with OIHW w, NHWC."""
  xp = np.pad(x, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)))
  k = w.shape[-1]
  ho = (xp.shape[1] - k) // stride + 1
  wo = (xp.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], ho, wo, w.shape[0]))
  for y in range(ho):
    for z in range(wo):
      patch = xp[:, y * stride:y * stride + k, z * stride:z * stride + k]
      out[:, y, z] = np.einsum('nhwc,ochw->no', patch, w)
  return out


class LayoutTest(parameterized.TestCase):

  def test_conv_transpose_hand_example(self):
    # One input pixel of value 1, 3x3 kernel, stride 2, padding 1, output
    # padding 1: output pixel y receives kernel tap a = y + 1, so the 2x2
    # output is the unflipped lower-right 2x2 of the PyTorch kernel.
    w = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    m = layers.conv_transpose(1, 3, 2, 1, 1, use_bias=False)
    v = {'params': {'kernel': convert.conv_transpose_kernel(w)}}
    y = m.apply(v, jnp.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(y[0, :, :, 0], [[4, 5], [7, 8]])

  @parameterized.parameters((4, 2, 1, 0), (3, 2, 1, 1), (4, 1, 0, 0),
                            (7, 1, 0, 0))
  def test_conv_transpose_matches_torch_definition(self, k, s, p, op):
    rng = np.random.default_rng(k + s + p + op)
    x = rng.standard_normal((2, 3, 3, 2)).astype(np.float32)
    w = rng.standard_normal((2, 3, k, k)).astype(np.float32)  # [in, out, .]
    m = layers.conv_transpose(3, k, s, p, op, use_bias=False)
    y = m.apply({'params': {'kernel': convert.conv_transpose_kernel(w)}}, x)
    want = torch_conv_transpose(x, w, s, p, op)
    self.assertEqual(y.shape, want.shape)
    np.testing.assert_allclose(y, want, atol=1e-5)

  @parameterized.parameters((3, 2, 1), (7, 1, 0), (4, 2, 1))
  def test_conv_matches_torch_definition(self, k, s, p):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((1, 8, 8, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2, k, k)).astype(np.float32)  # OIHW.
    m = layers.conv(3, k, s, p, use_bias=False)
    y = m.apply({'params': {'kernel': convert.conv_kernel(w)}}, x)
    np.testing.assert_allclose(y, torch_conv(x, w, s, p), atol=1e-5)

  def test_bad_rank_raises(self):
    with self.assertRaisesRegex(ValueError, 'OIHW'):
      convert.conv_kernel(np.zeros((3, 3)))


def tiny_cyclegan_sd(ngf=2, n_blocks=2, affine=False):
  """A random state dict with CycleGAN ``model.<i>`` keys."""
  rng = np.random.default_rng(0)
  sd = {}

  def conv(key, o, i, k, transpose=False):
    shape = (i, o, k, k) if transpose else (o, i, k, k)
    sd[f'{key}.weight'] = rng.standard_normal(shape).astype(np.float32)
    sd[f'{key}.bias'] = rng.standard_normal(o).astype(np.float32)

  def norm(key, c):
    if affine:
      sd[f'{key}.weight'] = np.ones(c, np.float32)
      sd[f'{key}.bias'] = np.zeros(c, np.float32)

  conv('model.1', ngf, 3, 7)
  norm('model.2', ngf)
  conv('model.4', 2 * ngf, ngf, 3)
  norm('model.5', 2 * ngf)
  conv('model.7', 4 * ngf, 2 * ngf, 3)
  norm('model.8', 4 * ngf)
  for b in range(n_blocks):
    for j in (1, 5):
      conv(f'model.{10 + b}.block.{j}', 4 * ngf, 4 * ngf, 3)
      norm(f'model.{10 + b}.block.{j + 1}', 4 * ngf)
  u = 10 + n_blocks
  conv(f'model.{u}', 2 * ngf, 4 * ngf, 3, transpose=True)
  norm(f'model.{u + 1}', 2 * ngf)
  conv(f'model.{u + 3}', ngf, 2 * ngf, 3, transpose=True)
  norm(f'model.{u + 4}', ngf)
  conv(f'model.{u + 7}', 3, ngf, 7)
  return sd


class ResnetConvertTest(parameterized.TestCase):

  @parameterized.parameters(False, True)
  def test_infers_architecture(self, affine):
    sd = tiny_cyclegan_sd(ngf=2, n_blocks=3, affine=affine)
    m = convert.resnet_module_from_torch(sd)
    self.assertEqual((m.ngf, m.n_blocks, m.affine), (2, 3, affine))
    v = convert.resnet_from_torch(sd)
    np.testing.assert_array_equal(
        v['params']['block2']['conv2']['kernel'],
        np.transpose(sd['model.12.block.5.weight'], (2, 3, 1, 0)))

  def test_missing_key_names_it(self):
    sd = tiny_cyclegan_sd()
    del sd['model.4.bias']
    with self.assertRaisesRegex(KeyError, 'model.4.bias'):
      convert.resnet_from_torch(sd)

  def test_unused_key_is_reported(self):
    sd = tiny_cyclegan_sd()
    sd['model.99.weight'] = np.zeros(3, np.float32)
    with self.assertRaisesRegex(ValueError, 'model.99.weight'):
      convert.resnet_from_torch(sd)


class PretrainedTest(absltest.TestCase):
  """The converted teachers reproduce PyTorch's outputs."""

  def test_vintagify_matches_pytorch(self):
    module, variables = convert.load_vintagify()
    self.assertIsInstance(module, resnet.ResnetGenerator)
    self.assertEqual((module.ngf, module.n_blocks, module.affine),
                     (64, 9, True))
    n = sum(x.size for x in jax.tree.leaves(variables))
    self.assertEqual(n, 11_388_675)
    io = np.load(os.path.join(FIXTURES, 'vintagify_io.npz'))
    x = io['x_u8'].astype(np.float32) / 127.5 - 1.0
    y, _ = jax.jit(module.apply)(variables, x)
    np.testing.assert_allclose(y, io['y'], atol=1e-4)

  def test_face_dcgan_matches_pytorch(self):
    module, variables = convert.load_face_dcgan()
    self.assertEqual((module.d, module.nz, module.resolution), (64, 100, 64))
    io = np.load(os.path.join(FIXTURES, 'face_io.npz'))
    y, _ = jax.jit(module.apply)(variables, io['z'])
    np.testing.assert_allclose(y, io['y'], atol=1e-4)
    # Running statistics are used at inference: a batch of one matches too.
    y1, _ = jax.jit(module.apply)(variables, io['z'][:1])
    np.testing.assert_allclose(y1[0], io['y'][0], atol=1e-4)


if __name__ == '__main__':
  absltest.main()

"""PyTorch state dicts -> Flax variables for the pretrained teachers.

A loader, not a model: it reads the pinned teacher files through
``gcjax.assets`` (``load_vintagify``, ``load_face_dcgan``); the converters
themselves (``resnet_from_torch``, ``dcgan_from_torch``) are pure.

Layouts: a PyTorch ``Conv2d`` weight is [out, in, kh, kw] (OIHW) and becomes
Flax's HWIO kernel by a transpose. A PyTorch ``ConvTranspose2d`` weight is
[in, out, kh, kw]; the op equals a stride-1 conv of the stride-dilated input
with that kernel flipped in both spatial axes, which is what Flax's
``ConvTranspose`` (``transpose_kernel=False``, see
``layers.conv_transpose``) computes with an unflipped HWIO kernel. So the
Flax kernel is the weight transposed to [kh, kw, in, out] and flipped.
Batch norm ``weight``/``bias``/``running_mean``/``running_var`` become
``scale``/``bias`` params and ``mean``/``var`` batch stats.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from gcjax import assets
from gcjax.models import dcgan, resnet

StateDict = Mapping[str, np.ndarray]
Variables = dict[str, Any]


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch Conv2d weight [O, I, kh, kw] -> Flax HWIO [kh, kw, I, O]."""
  if w.ndim != 4:
    raise ValueError(f'conv weight must be 4-D OIHW, got shape {w.shape}')
  return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def conv_transpose_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch ConvTranspose2d weight [I, O, kh, kw] -> Flax [kh, kw, I, O].

  Transposed and flipped in kh and kw (see the module docstring).
  """
  if w.ndim != 4:
    raise ValueError(f'conv-transpose weight must be 4-D [in, out, kh, kw], '
                     f'got shape {w.shape}')
  return np.ascontiguousarray(np.transpose(w, (2, 3, 0, 1))[::-1, ::-1])


class _Reader:
  """Pops keys off a state dict and reports missing or left-over ones."""

  def __init__(self, sd: StateDict, what: str):
    self.sd = {k: np.asarray(v) for k, v in sd.items()
               if not k.endswith('num_batches_tracked')}
    self.what = what

  def take(self, key: str) -> np.ndarray:
    if key not in self.sd:
      raise KeyError(f'{self.what} state dict has no key {key!r} '
                     f'(keys: {sorted(self.sd)[:8]}...)')
    return self.sd.pop(key).astype(np.float32)

  def conv(self, prefix: str, transpose: bool = False,
           bias: bool = True) -> dict[str, Any]:
    w = self.take(f'{prefix}.weight')
    out = {'kernel': conv_transpose_kernel(w) if transpose else conv_kernel(w)}
    if bias:
      out['bias'] = self.take(f'{prefix}.bias')
    return out

  def affine(self, prefix: str) -> dict[str, Any]:
    return {'scale': self.take(f'{prefix}.weight'),
            'bias': self.take(f'{prefix}.bias')}

  def finish(self) -> None:
    if self.sd:
      raise ValueError(f'{self.what} state dict has unused keys: '
                       f'{sorted(self.sd)}')


def _check_against(module, variables: Variables, sample: jax.Array,
                   what: str) -> None:
  """Raises if ``variables`` differ in structure or shapes from ``module``."""
  expected = jax.eval_shape(
      lambda: module.init(jax.random.key(0), sample, train=False))
  flat_e = flax.traverse_util.flatten_dict(flax.core.unfreeze(expected),
                                           sep='/')
  flat_g = flax.traverse_util.flatten_dict(variables, sep='/')
  if set(flat_e) != set(flat_g):
    raise ValueError(f'{what}: converted variables do not match the module: '
                     f'missing {sorted(set(flat_e) - set(flat_g))}, '
                     f'unexpected {sorted(set(flat_g) - set(flat_e))}')
  for k, e in flat_e.items():
    if tuple(e.shape) != tuple(flat_g[k].shape):
      raise ValueError(f'{what}: {k} has shape {flat_g[k].shape}, module '
                       f'expects {e.shape}')


def resnet_module_from_torch(sd: StateDict) -> resnet.ResnetGenerator:
  """The ``ResnetGenerator`` that a CycleGAN ``model.<i>`` state dict fits.

  ngf from the stem conv, n_blocks from the ``model.<i>.block`` keys,
  instance-norm affine from whether the stem norm has weights.
  """
  if 'model.1.weight' not in sd:
    raise KeyError('CycleGAN state dict needs model.1.weight (the 7x7 stem '
                   f'conv); got keys {sorted(sd)[:8]}...')
  ngf = int(sd['model.1.weight'].shape[0])
  blocks = {int(m.group(1)) for k in sd
            if (m := re.match(r'model\.(\d+)\.block\.', k))}
  if blocks and blocks != set(range(10, 10 + len(blocks))):
    raise ValueError(f'residual blocks expected at model.10.. contiguous, '
                     f'got indices {sorted(blocks)}')
  out_key = f'model.{10 + len(blocks) + 7}.weight'
  if out_key not in sd:
    raise KeyError(f'CycleGAN state dict with {len(blocks)} blocks needs '
                   f'{out_key!r} (the output conv)')
  return resnet.ResnetGenerator(
      ngf=ngf, n_blocks=len(blocks), out_ch=int(sd[out_key].shape[0]),
      norm='instance', affine='model.2.weight' in sd)


def resnet_from_torch(sd: StateDict) -> Variables:
  """Flax variables of a CycleGAN ResNet generator state dict.

  The PyTorch ``nn.Sequential`` indices: 0 pad, 1 conv, 2 norm, 3 ReLU;
  4/5/6 and 7/8/9 the two downsampling stages; 10 .. 9+n residual blocks
  (``block.1``/``block.2`` conv/norm, ``block.5``/``block.6`` conv/norm);
  then two transposed-conv stages of three; pad; output conv; tanh.

  Args:
    sd: ``{'model.1.weight': [ngf, 3, 7, 7] float32, ...}``.

  Returns:
    ``{'params': ...}`` for ``resnet_module_from_torch(sd)``.
  """
  module = resnet_module_from_torch(sd)
  r = _Reader(sd, 'CycleGAN ResNet')
  p = {}

  def norm(prefix):
    return r.affine(prefix) if module.affine else {}

  def put(name, value):
    if value:
      p[name] = value

  put('stem_conv', r.conv('model.1'))
  put('stem_norm', norm('model.2'))
  for i in range(2):
    put(f'down{i}_conv', r.conv(f'model.{4 + 3 * i}'))
    put(f'down{i}_norm', norm(f'model.{5 + 3 * i}'))
  for i in range(module.n_blocks):
    b = f'model.{10 + i}.block'
    block = {'conv1': r.conv(f'{b}.1'), 'conv2': r.conv(f'{b}.5')}
    if module.affine:
      block.update(norm1=norm(f'{b}.2'), norm2=norm(f'{b}.6'))
    p[f'block{i}'] = block
  up0 = 10 + module.n_blocks
  for i in range(2):
    put(f'up{i}_conv', r.conv(f'model.{up0 + 3 * i}', transpose=True))
    put(f'up{i}_norm', norm(f'model.{up0 + 1 + 3 * i}'))
  put('out_conv', r.conv(f'model.{up0 + 7}'))
  r.finish()
  variables = {'params': p}
  _check_against(module, variables, jnp.zeros((1, 8, 8, 3)), 'ResNet')
  return variables


def dcgan_module_from_torch(sd: StateDict) -> dcgan.DCGANGenerator:
  """The 64x64 ``DCGANGenerator`` that a tutorial ``main.<i>`` dict fits."""
  if 'main.0.weight' not in sd:
    raise KeyError('DCGAN state dict needs main.0.weight; got keys '
                   f'{sorted(sd)[:8]}...')
  nz, c8 = sd['main.0.weight'].shape[:2]
  if c8 % 8 or 'main.12.weight' not in sd:
    raise ValueError('expected the 64x64 DCGAN tutorial generator (main.0 '
                     f'[nz, 8d, 4, 4] ... main.12); main.0.weight has shape '
                     f'{sd["main.0.weight"].shape}')
  return dcgan.DCGANGenerator(d=int(c8) // 8, nz=int(nz),
                              out_ch=int(sd['main.12.weight'].shape[1]),
                              resolution=64, norm='batch')


def dcgan_from_torch(sd: StateDict) -> Variables:
  """Flax variables of the PyTorch-tutorial 64x64 DCGAN generator.

  ``main.{3i}`` is transposed conv i (no bias), ``main.{3i+1}`` its batch
  norm (i < 4), ``main.12`` the output transposed conv.

  Args:
    sd: ``{'main.0.weight': [nz, 8d, 4, 4] float32, ...}``.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` for ``dcgan_module_from_torch``.
  """
  module = dcgan_module_from_torch(sd)
  r = _Reader(sd, 'DCGAN')
  params, stats = {}, {}
  for i in range(5):
    params[f'conv{i}'] = r.conv(f'main.{3 * i}', transpose=True, bias=False)
    if i < 4:
      params[f'norm{i}'] = r.affine(f'main.{3 * i + 1}')
      stats[f'norm{i}'] = {'mean': r.take(f'main.{3 * i + 1}.running_mean'),
                           'var': r.take(f'main.{3 * i + 1}.running_var')}
  r.finish()
  variables = {'params': params, 'batch_stats': stats}
  _check_against(module, variables, jnp.zeros((1, module.nz)), 'DCGAN')
  return variables


def load_vintagify() -> tuple[resnet.ResnetGenerator, Variables]:
  """The vintagify photo -> vintage CycleGAN teacher (ngf 64, 9 blocks).

  Input/output [B, H, W, 3] in [-1, 1]; H, W divisible by 4. Instance norm
  uses per-image statistics, so no ``train`` subtlety at inference.
  """
  sd = assets.load_state_dict('vintagify_a2b')
  return resnet_module_from_torch(sd), resnet_from_torch(sd)


def load_face_dcgan() -> tuple[dcgan.DCGANGenerator, Variables]:
  """The gan-face-generate 64x64 face DCGAN teacher (nz 100, d 64).

  Call with ``train=False`` so batch norm uses the shipped running stats.
  """
  sd = assets.load_state_dict('face_dcgan')
  return dcgan_module_from_torch(sd), dcgan_from_torch(sd)

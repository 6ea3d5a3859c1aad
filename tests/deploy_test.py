"""Deployment exports: ONNX / StableHLO round trips, the export command,
digests, and gcjax.generate with and without JAX."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from gcjax import deployed, errors, export, generate
from gcjax.export import onnx_conv, to_onnx, to_stablehlo, verify
from gcjax.methods import base
from gcjax.models import dcgan, kdit, resnet, stylegan, unet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, 'PYTHONPATH': ROOT}
NO_JAX = ('import sys\n'
          'for m in ("jax", "jaxlib", "flax", "absl", "optax", "orbax", '
          '"ml_collections"):\n'
          '  sys.modules[m] = None\n'
          'import runpy\n'
          'sys.argv = ["gcjax.generate"] + sys.argv[1:]\n'
          'runpy.run_module("gcjax.generate", run_name="__main__")\n')


def _perturbed(module, shape):
  """Variables with non-trivial batch stats (so folding is exercised)."""
  v = module.init(jax.random.key(0), jnp.zeros((1, *shape)))
  leaves, tree = jax.tree.flatten(v)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [a + 0.2 * jax.random.normal(k, a.shape) for a, k in
            zip(leaves, keys)]
  v = jax.tree.unflatten(tree, leaves)
  if 'batch_stats' in v:
    v['batch_stats'] = {
        k: {'mean': s['mean'], 'var': jnp.abs(s['var']) + 0.5}
        for k, s in v['batch_stats'].items()}
  return v


FAMILIES = {
    'unet': (unet.UNetGenerator(ngf=4, num_downs=3), (16, 16, 3)),
    'mobile_resnet': (resnet.MobileResnetGenerator(ngf=4, n_blocks=2),
                      (16, 16, 3)),
    'dcgan': (dcgan.DCGANGenerator(d=4, nz=8, resolution=28), (8,)),
    # Modulated convs with demodulation: x * style -> one shared conv ->
    # * demod (the per-example weight never exists, so the batch is free).
    'stylegan': (stylegan.StyleGenerator(z_dim=8, w_dim=8, map_layers=2,
                                         resolution=8, ch_base=64,
                                         ch_max=8), (8,)),
    # KDIT students: I2I (source ++ reference on channels; avg-pool,
    # nearest upsampling, AdaIN) and X2I ([z, c] -> image), its mapping net.
    'kdit_i2i': (kdit.I2IStudent(resolution=8, out_ch=1, ch=4, style_dim=8),
                 (8, 8, 2)),
    'kdit_x2i': (kdit.X2IGenerator(z_dim=4, c_dim=4, resolution=8, ch=4),
                 (8,)),
    'kdit_mapping': (kdit.MappingNet(z_dim=4, style_dim=4, hidden=8,
                                     num_classes=3), (4,)),
}


@pytest.fixture(scope='module')
def built():
  """``{family: verify.build(...)}`` at a dynamic batch, both formats."""
  out = {}
  for name, (m, shape) in FAMILIES.items():
    v = _perturbed(m, shape)
    out[name] = (m, v, verify.build(m, v, shape, batch=None))
  return out


def _ops(blob):
  return {n.op_type for n in onnx.load_from_string(blob).graph.node}


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_round_trip_matches_jax(built, family):
  m, v, out = built[family]
  for fmt in ('onnx', 'stablehlo'):
    assert out[fmt][1]['check']['max_abs_err'] <= 1e-4, fmt
    assert out[fmt][1]['check']['batches'] == [1, 3]
  # And independently of verify.check: a fresh draw at batch 2.
  shape = FAMILIES[family][1]
  x = np.asarray(jax.random.uniform(jax.random.key(7), (2, *shape),
                                    minval=-1, maxval=1))
  want = np.asarray(m.apply(v, x, train=False)[0])
  sess = ort.InferenceSession(out['onnx'][0])
  got = sess.run(None, {'input': x})[0]
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  got = to_stablehlo.run(out['stablehlo'][0], jax.tree.map(np.asarray, v), x)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_unet_batch_norm_folded(built):
  ops = _ops(built['unet'][2]['onnx'][0])
  # Inference batch norm and conv biases live in the convs' weights.
  assert not ops & {'BatchNormalization', 'Sub', 'Mul', 'Add', 'Div'}, ops
  assert {'Conv', 'ConvTranspose', 'LeakyRelu', 'Relu'} <= ops


def test_mobile_resnet_depthwise_and_instance_norm(built):
  model = onnx.load_from_string(built['mobile_resnet'][2]['onnx'][0])
  groups = [a.i for n in model.graph.node if n.op_type == 'Conv'
            for a in n.attribute if a.name == 'group']
  assert max(groups) > 1           # the depthwise convs are grouped convs
  ops = {n.op_type for n in model.graph.node}
  assert {'InstanceNormalization', 'Pad'} <= ops
  assert not ops & {'ReduceSum', 'Slice'}, ops


@pytest.mark.parametrize('form', onnx_conv.FORMS)
def test_transposed_conv_forms_match(form):
  m, shape = FAMILIES['unet']
  v = _perturbed(m, shape)
  apply = lambda v, x: m.apply(v, x, train=False)[0]
  blob = to_onnx.convert(apply, v, shape, batch=2, transposed=form)
  want_op = 'ConvTranspose' if form == 'convtranspose' else 'DepthToSpace'
  assert want_op in _ops(blob)
  x = verify.check_inputs(shape, 'float32', 2)
  got = ort.InferenceSession(blob).run(None, {'input': x})[0]
  np.testing.assert_allclose(got, np.asarray(apply(v, x)), atol=1e-4, rtol=0)


def test_dynamic_batch_runs_at_1_and_3(built):
  m, v, out = built['unet']
  sess = ort.InferenceSession(out['onnx'][0])
  assert sess.get_inputs()[0].shape[0] == 'N'
  for b in (1, 3):
    x = verify.check_inputs((16, 16, 3), 'float32', b)
    y = sess.run(None, {'input': x})[0]
    assert y.shape == (b, 16, 16, 3)
    np.testing.assert_allclose(
        y, np.asarray(m.apply(v, x, train=False)[0]), atol=1e-4, rtol=0)


def test_check_refuses_a_mismatch_and_says_by_how_much():
  ref = lambda x: np.tanh(x)
  with pytest.raises(verify.CheckFailed, match=r'exceeds the tolerance '
                     r'0.0001 by 0.0004'):
    verify.check(lambda x: np.tanh(x) + 5e-4, ref, (4, 4, 1), 'float32',
                 (1,), 1e-4, 'ONNX export')


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """A finished run's export/ (U-Net student + DCGAN generator), exported
  for deployment by the command line."""
  d = str(tmp_path_factory.mktemp('run'))
  nets = {}
  for net, fam in (('student', 'unet'), ('generator', 'dcgan'),
                   ('style', 'stylegan')):
    m, shape = FAMILIES[fam]
    nets[net] = base.Network(m, _perturbed(m, shape), shape)
  export.export(os.path.join(d, 'export'), nets, list(nets),
                ml_collections.ConfigDict({'seed': 0}))
  for args in (['--format=onnx,stablehlo'],
               ['--net=generator', '--format=onnx', '--batch=2'],
               ['--net=style', '--format=onnx']):
    r = subprocess.run([sys.executable, '-m', 'gcjax.export',
                        f'--workdir={d}', *args], env=ENV, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
  return d


def test_export_command_writes_checked_files_and_card(run_dir):
  card = deployed.read_card(os.path.join(run_dir, 'deploy'))
  st = card['networks']['student']
  assert st['input']['shape'] == ['N', 16, 16, 3]
  assert set(st['files']) == {'onnx', 'stablehlo'}
  assert st['files']['stablehlo']['platforms'] == ['cpu', 'cuda', 'tpu']
  for f in st['files'].values():
    assert f['check']['max_abs_err'] <= 1e-4
    path = os.path.join(run_dir, 'deploy', f['file'])
    assert verify.sha256(open(path, 'rb').read()) == f['sha256']
  assert card['networks']['generator']['input']['shape'] == [2, 8]


def test_export_command_rejects_a_bad_format(run_dir):
  r = subprocess.run([sys.executable, '-m', 'gcjax.export',
                      f'--workdir={run_dir}', '--format=tflite'], env=ENV,
                     cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 2
  assert '--format=tflite' in r.stderr and 'Traceback' not in r.stderr


def test_tampered_export_is_refused(run_dir, tmp_path):
  src = os.path.join(run_dir, 'deploy')
  dst = tmp_path / 'deploy'
  dst.mkdir()
  for n in os.listdir(src):
    (dst / n).write_bytes(open(os.path.join(src, n), 'rb').read())
  deployed.onnx_session(str(dst))            # intact: accepted
  blob = bytearray((dst / 'student.onnx').read_bytes())
  blob[-1] ^= 1
  (dst / 'student.onnx').write_bytes(bytes(blob))
  with pytest.raises(errors.UserError, match='student.onnx: SHA-256'):
    deployed.onnx_session(str(dst))
  assert generate.main([f'--model={dst}', '--input=.', f'--output='
                        f'{tmp_path / "o"}']) == 2


def _images(folder, n=3):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  for i in range(n):
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), np.uint8)).save(
        os.path.join(folder, f'im{i}.png'))
  with open(os.path.join(folder, 'broken.png'), 'wb') as f:
    f.write(b'this is not an image')


def test_generate_without_jax_skips_the_broken_image(run_dir, tmp_path):
  _images(tmp_path / 'in')
  r = subprocess.run(
      [sys.executable, '-c', NO_JAX, f'--model={run_dir}/deploy',
       f'--input={tmp_path / "in"}', f'--output={tmp_path / "out"}',
       '--batch=2'], env=ENV, cwd=ROOT, capture_output=True, text=True,
      timeout=300)
  assert r.returncode == 0, r.stderr
  assert 'broken.png' in r.stderr and 'broken.png' in r.stdout
  assert sorted(os.listdir(tmp_path / 'out')) == ['im0.png', 'im1.png',
                                                   'im2.png']
  out = np.asarray(Image.open(tmp_path / 'out' / 'im0.png'))
  assert out.shape == (16, 16, 3)
  # Same pixels as the network under JAX (to rounding of one level).
  runner = generate.jax_runner(run_dir, 'student')
  x = generate.read_image(str(tmp_path / 'in' / 'im0.png'), (16, 16, 3))
  want = generate.to_uint8(runner(x[None])[0])
  assert np.abs(out.astype(int) - want).max() <= 1


def test_generate_samples_from_a_fixed_batch_export(run_dir, tmp_path):
  assert generate.main([f'--model={run_dir}/deploy', '--net=generator',
                        '--num=5', '--batch=4',
                        f'--output={tmp_path}']) == 0
  names = sorted(os.listdir(tmp_path))
  assert names == [f'sample_{i:05d}.png' for i in range(5)]
  assert np.asarray(Image.open(tmp_path / names[0])).shape == (28, 28, 3)


def test_generate_samples_from_a_dynamic_stylegan_export(run_dir, tmp_path):
  r = subprocess.run(
      [sys.executable, '-c', NO_JAX, f'--model={run_dir}/deploy',
       '--net=style', '--num=5', '--batch=2', '--seed=3',
       f'--output={tmp_path}'], env=ENV, cwd=ROOT, capture_output=True,
      text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  names = sorted(os.listdir(tmp_path))
  assert names == [f'sample_{i:05d}.png' for i in range(5)]
  got = np.stack([np.asarray(Image.open(tmp_path / n)) for n in names])
  assert got.shape == (5, 8, 8, 3)
  # The same latents through the network under JAX: the same pixels.
  rng = np.random.default_rng(3)
  z = np.concatenate([rng.standard_normal((n, 8)).astype(np.float32)
                      for n in (2, 2, 1)])
  want = generate.to_uint8(generate.jax_runner(run_dir, 'style')(z))
  assert np.abs(got.astype(int) - want).max() <= 1
  assert len({g.tobytes() for g in got}) == 5      # distinct samples


def test_card_is_json_with_source_digest(run_dir):
  with open(os.path.join(run_dir, 'deploy', 'card.json')) as f:
    card = json.load(f)
  src = card['networks']['student']['source']
  npz = open(os.path.join(run_dir, 'export', 'student.npz'), 'rb').read()
  assert src['npz_sha256'] == verify.sha256(npz)

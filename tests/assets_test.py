"""Tests for gcjax.assets: locating, verifying, safe loading, caching."""

import collections
import os
import pathlib
import pickle
import struct
import zipfile

import numpy as np
import pytest

from gcjax import assets

# --------------------------------------------------------------------------
# A tiny pickle writer, so tests can reference torch/os globals without
# importing them (and without the real objects existing).


class G:
  """A global reference ``module.name``."""

  def __init__(self, module, name):
    self.module, self.name = module, name


class Call:
  """``fn(*args)`` through REDUCE."""

  def __init__(self, fn, *args):
    self.fn, self.args = fn, args


class NewObj:
  """``cls.__new__(cls)`` through NEWOBJ, then BUILD with ``state``."""

  def __init__(self, cls, state):
    self.cls, self.state = cls, state


class PersId:
  """A persistent id (BINPERSID) for the tuple ``pid``."""

  def __init__(self, *pid):
    self.pid = pid


def _emit(obj, out):
  if isinstance(obj, G):
    out += b'c' + f'{obj.module}\n{obj.name}\n'.encode()
  elif isinstance(obj, Call):
    _emit(obj.fn, out)
    _emit(tuple(obj.args), out)
    out += pickle.REDUCE
  elif isinstance(obj, NewObj):
    _emit(obj.cls, out)
    out += pickle.EMPTY_TUPLE + pickle.NEWOBJ
    _emit(obj.state, out)
    out += pickle.BUILD
  elif isinstance(obj, PersId):
    _emit(obj.pid, out)
    out += pickle.BINPERSID
  elif obj is None:
    out += pickle.NONE
  elif isinstance(obj, bool):
    out += pickle.NEWTRUE if obj else pickle.NEWFALSE
  elif isinstance(obj, int):
    out += pickle.BININT + struct.pack('<i', obj)
  elif isinstance(obj, str):
    raw = obj.encode()
    out += pickle.BINUNICODE + struct.pack('<I', len(raw)) + raw
  elif isinstance(obj, tuple):
    out += pickle.MARK
    for v in obj:
      _emit(v, out)
    out += pickle.TUPLE
  elif isinstance(obj, list):
    out += pickle.EMPTY_LIST + pickle.MARK
    for v in obj:
      _emit(v, out)
    out += pickle.APPENDS
  elif isinstance(obj, dict):
    out += pickle.EMPTY_DICT + pickle.MARK
    for k, v in obj.items():
      _emit(k, out)
      _emit(v, out)
    out += pickle.SETITEMS
  else:
    raise TypeError(type(obj))


def dumps(obj) -> bytes:
  """Protocol-2 pickle of `obj` built from G/Call/NewObj/PersId/builtins."""
  out = bytearray(b'\x80\x02')
  _emit(obj, out)
  return bytes(out + pickle.STOP)


def tensor(storage_type, key, numel, offset, size, stride):
  storage = PersId('storage', G('torch', storage_type), key, 'cpu', numel)
  return Call(G('torch._utils', '_rebuild_tensor_v2'), storage, offset,
              tuple(size), tuple(stride), False,
              Call(G('collections', 'OrderedDict')))


def write_torch_zip(path, data_pkl, storages, root='archive'):
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr(f'{root}/data.pkl', data_pkl)
    zf.writestr(f'{root}/byteorder', 'little')
    for key, arr in storages.items():
      zf.writestr(f'{root}/data/{key}', np.ascontiguousarray(arr).tobytes())
    zf.writestr(f'{root}/version', '3\n')


# --------------------------------------------------------------------------
# Restricted unpickling.


def test_crafted_torch_zip_round_trips(tmp_path):
  s0 = np.arange(12, dtype=np.float32) * 0.5
  s1 = np.array([7, -3, 2**40, 5], dtype=np.int64)
  s2 = np.array([1.5, -2.25, 3.0], dtype=np.float16)
  s3 = np.array([1, 0, 1], dtype=np.bool_)
  state = Call(G('collections', 'OrderedDict'), [
      ('w', tensor('FloatStorage', '0', 12, 0, (2, 3), (3, 1))),
      ('w_t', tensor('FloatStorage', '0', 12, 0, (3, 2), (1, 3))),
      ('w_view', tensor('FloatStorage', '0', 12, 6, (2, 2), (1, 3))),
      ('idx', tensor('LongStorage', '1', 4, 1, (3,), (1,))),
      ('half', tensor('HalfStorage', '2', 3, 0, (3,), (1,))),
      ('mask', tensor('BoolStorage', '3', 3, 0, (3,), (1,))),
      ('param', Call(G('torch._utils', '_rebuild_parameter'),
                     tensor('FloatStorage', '0', 12, 4, (4,), (2,)), True,
                     Call(G('collections', 'OrderedDict')))),
  ])
  path = tmp_path / 'sd.pt'
  write_torch_zip(path, dumps(state), {'0': s0, '1': s1, '2': s2, '3': s3})
  sd = assets.load_torch_archive(path)
  assert type(sd) is dict and list(sd) == ['w', 'w_t', 'w_view', 'idx',
                                           'half', 'mask', 'param']
  np.testing.assert_array_equal(sd['w'], s0[:6].reshape(2, 3))
  np.testing.assert_array_equal(sd['w_t'], s0[:6].reshape(2, 3).T)
  np.testing.assert_array_equal(sd['w_view'], s0[6:12].reshape(2, 3).T[:2])
  np.testing.assert_array_equal(sd['idx'], s1[1:])
  np.testing.assert_array_equal(sd['half'], s2)
  np.testing.assert_array_equal(sd['mask'], s3)
  np.testing.assert_array_equal(sd['param'], s0[4:12:2])
  assert sd['half'].dtype == np.float16 and sd['idx'].dtype == np.int64
  assert sd['w_t'].flags['C_CONTIGUOUS']


def test_crafted_torchscript_zip(tmp_path):
  w = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
  conv = NewObj(G('__torch__.net', 'Conv2dLayer'), {
      'training': False, 'weight': tensor('FloatStorage', '0', w.size, 0,
                                          w.shape, (18, 9, 3, 1)),
      'stride': 2,
      'padding': Call(G('torch.jit._pickle', 'build_intlist'), [0, 1])})
  top = NewObj(G('__torch__.wrap', 'Wrap'),
               {'training': False, 'net': NewObj(G('__torch__.net', 'Seq'),
                                                 {'conv': conv})})
  path = tmp_path / 'script.pt'
  write_torch_zip(path, dumps(top), {'0': w}, root='out_jit_module')
  obj = assets.load_torch_archive(path)
  assert isinstance(obj, assets.ScriptObject)
  assert obj.type_name == '__torch__.wrap.Wrap'
  layer = obj.net.conv
  assert layer.type_name == '__torch__.net.Conv2dLayer'
  assert layer.padding == [0, 1] and layer['stride'] == 2
  np.testing.assert_array_equal(layer.weight, w)
  flat = assets.flatten_arrays(obj)
  assert list(flat) == ['net.conv.weight']


MALICIOUS = [('os', 'system'), ('builtins', 'eval'), ('subprocess', 'Popen'),
             ('numpy', 'load'), ('torch._utils', '_rebuild_tensor'),
             ('__builtin__', 'exec')]


@pytest.mark.parametrize('module,name', MALICIOUS)
def test_malicious_zip_refused_without_running(tmp_path, module, name):
  marker = tmp_path / 'pwned'
  payload = Call(G(module, name), f'touch {marker}')
  path = tmp_path / 'evil.pt'
  write_torch_zip(path, dumps({'x': payload}), {})
  with pytest.raises(assets.UnsafePickleError) as err:
    assets.load_torch_archive(path)
  assert f'{module}.{name}' in str(err.value)
  assert str(path) in str(err.value)
  assert not marker.exists()


@pytest.mark.parametrize('module,name', MALICIOUS)
def test_malicious_plain_pickle_refused(tmp_path, module, name):
  marker = tmp_path / 'pwned'
  path = tmp_path / 'evil.ckpt'
  path.write_bytes(dumps({'a': Call(G(module, name), f'touch {marker}')}))
  with pytest.raises(assets.UnsafePickleError) as err:
    assets.load_numpy_pickle(path)
  assert f'{module}.{name}' in str(err.value) and str(path) in str(err.value)
  assert not marker.exists()


def test_real_pickle_with_os_system_refused(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, (f'touch {tmp_path / "pwned"}',))
  path = tmp_path / 'evil.pkl'
  path.write_bytes(pickle.dumps({'w': Evil()}))
  with pytest.raises(assets.UnsafePickleError, match=r'(posix|os|nt)\.system'):
    assets.load_numpy_pickle(path)
  assert not (tmp_path / 'pwned').exists()


def test_object_arrays_refused(tmp_path):
  path = tmp_path / 'obj.pkl'
  path.write_bytes(pickle.dumps({'a': np.array(['x', 1], dtype=object)}))
  with pytest.raises(assets.UnsafePickleError, match='Python objects'):
    assets.load_numpy_pickle(path)


def test_torch_globals_not_allowed_in_numpy_pickle(tmp_path):
  path = tmp_path / 't.pkl'
  path.write_bytes(dumps(tensor('FloatStorage', '0', 1, 0, (1,), (1,))))
  with pytest.raises(assets.UnsafePickleError, match='_rebuild_tensor_v2'):
    assets.load_numpy_pickle(path)


def test_tensor_past_its_storage_rejected(tmp_path):
  path = tmp_path / 'oob.pt'
  write_torch_zip(path, dumps({'w': tensor('FloatStorage', '0', 4, 2, (3,),
                                           (1,))}),
                  {'0': np.zeros(4, np.float32)})
  with pytest.raises(pickle.UnpicklingError, match='past its storage'):
    assets.load_torch_archive(path)


@pytest.mark.parametrize('proto', [2, 4, 5])
def test_numpy_pickle_round_trip(tmp_path, proto):
  tree = {'a': {'k': np.arange(6, dtype=np.float32).reshape(2, 3)},
          'b': collections.OrderedDict(x=np.array([1, 2], np.int64)),
          'c': np.float32(2.5), 'f': np.asfortranarray(np.eye(3))}
  path = tmp_path / 'w.pkl'
  path.write_bytes(pickle.dumps(tree, protocol=proto))
  out = assets.load_numpy_pickle(path)
  np.testing.assert_array_equal(out['a']['k'], tree['a']['k'])
  np.testing.assert_array_equal(out['b']['x'], tree['b']['x'])
  np.testing.assert_array_equal(out['f'], np.eye(3))
  assert out['c'] == np.float32(2.5) and type(out['b']) is dict


# --------------------------------------------------------------------------
# Locating and verifying, with a fake installed distribution.


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
  """Installs distribution fake-gcjax-asset 1.2 holding fake_pkg/w.bin."""
  site = tmp_path / 'site'
  (site / 'fake_pkg').mkdir(parents=True)
  meta = site / 'fake_gcjax_asset-1.2.dist-info'
  meta.mkdir()
  (meta / 'METADATA').write_text(
      'Metadata-Version: 2.1\nName: fake-gcjax-asset\nVersion: 1.2\n')
  weights = site / 'fake_pkg' / 'w.bin'
  weights.write_bytes(pickle.dumps({'w': np.arange(5, dtype=np.float32)}))
  monkeypatch.syspath_prepend(str(site))
  monkeypatch.setitem(assets.ASSETS, 'fake', assets.Asset(
      'fake-gcjax-asset', '1.2', 'fake_pkg/w.bin', assets.sha256_of(weights)))
  monkeypatch.setenv('GCJAX_CACHE', str(tmp_path / 'cache'))
  return weights


def test_asset_path_finds_and_verifies(fake_dist):
  assert assets.asset_path('fake') == fake_dist


def test_tampered_asset_rejected(fake_dist):
  data = bytearray(fake_dist.read_bytes())
  data[len(data) // 2] ^= 0x01
  fake_dist.write_bytes(bytes(data))
  expected = assets.ASSETS['fake'].sha256
  with pytest.raises(assets.AssetError) as err:
    assets.asset_path('fake')
  msg = str(err.value)
  assert str(fake_dist) in msg and expected in msg
  assert assets.sha256_of(fake_dist) in msg


def test_tampered_copy_of_real_asset_rejected(tmp_path):
  src = assets.asset_path('lpips_alexnet')
  copy = tmp_path / src.name
  data = bytearray(src.read_bytes())
  data[1000] ^= 0xFF
  copy.write_bytes(bytes(data))
  with pytest.raises(assets.AssetError, match='Checksum mismatch'):
    assets.verify_sha256(copy, assets.ASSETS['lpips_alexnet'].sha256)


def test_missing_package_names_pip_line(monkeypatch):
  monkeypatch.setitem(assets.ASSETS, 'ghost', assets.Asset(
      'ghost-gcjax-pkg', '0.0.1', 'ghost/w.pt', '0' * 64))
  with pytest.raises(assets.AssetError) as err:
    assets.asset_path('ghost')
  assert 'pip install --no-deps ghost-gcjax-pkg==0.0.1' in str(err.value)


def test_wrong_version_names_pip_line(fake_dist, monkeypatch):
  del fake_dist
  monkeypatch.setitem(assets.ASSETS, 'fake',
                      assets.ASSETS['fake']._replace(version='9.9'))
  with pytest.raises(assets.AssetError,
                     match=r'pip install --no-deps fake-gcjax-asset==9\.9'):
    assets.asset_path('fake')


def test_unknown_asset_lists_known():
  with pytest.raises(KeyError, match='fid_inception'):
    assets.asset_path('nope')


def test_cache_written_once_and_reused(fake_dist, monkeypatch):
  calls = []

  def convert(path):
    calls.append(path)
    return {'w2': assets.load_numpy_pickle(path)['w'] * 2}

  first = assets.cached_npz('fake', convert, tag='x2')
  cache = assets.cache_file('fake', 'x2')
  assert cache.name == f'fake-x2-{assets.ASSETS["fake"].sha256[:12]}.npz'
  assert cache.parent == pathlib.Path(os.environ['GCJAX_CACHE'])
  # No temporary files; the digest sidecar next to the cache file.
  assert sorted(p.name for p in cache.parent.iterdir()) == [
      cache.name, cache.name + '.sha256']
  mtime = cache.stat().st_mtime_ns
  # A cache hit needs neither the converter nor the package.
  monkeypatch.setitem(assets.ASSETS, 'fake', assets.ASSETS['fake']._replace(
      dist='gone-gcjax-pkg'))
  second = assets.cached_npz('fake', convert, tag='x2')
  assert len(calls) == 1 and cache.stat().st_mtime_ns == mtime
  np.testing.assert_array_equal(first['w2'], np.arange(5) * 2)
  np.testing.assert_array_equal(second['w2'], first['w2'])


def _convert_x2(calls):
  def convert(path):
    calls.append(path)
    return {'w2': assets.load_numpy_pickle(path)['w'] * 2}
  return convert


@pytest.mark.parametrize('damage', ['truncate', 'tamper', 'no_digest'])
def test_damaged_cache_is_rebuilt_with_one_line(fake_dist, capsys, damage):
  """A truncated, rewritten or unrecorded cache file is never used."""
  del fake_dist
  calls = []
  convert = _convert_x2(calls)
  assets.cached_npz('fake', convert, tag='x2')
  cache = assets.cache_file('fake', 'x2')
  if damage == 'truncate':
    data = cache.read_bytes()
    cache.write_bytes(data[:len(data) // 2])
  elif damage == 'tamper':
    # A valid .npz with other numbers: only the recorded digest tells.
    np.savez(cache, w2=np.full(5, 7.0, np.float32))
  else:
    (cache.parent / (cache.name + '.sha256')).unlink()
  capsys.readouterr()
  got = assets.cached_npz('fake', convert, tag='x2')
  err = capsys.readouterr().err.strip().splitlines()
  assert len(calls) == 2, 'the damaged cache was used'
  np.testing.assert_array_equal(got['w2'], np.arange(5) * 2)
  assert len(err) == 1 and str(cache) in err[0] and 'rebuilding' in err[0]
  assert {'truncate': 'cannot be read', 'tamper': 'do not match',
          'no_digest': 'no recorded digest'}[damage] in err[0]
  # Rebuilt with a digest: the next call is a silent cache hit.
  assets.cached_npz('fake', convert, tag='x2')
  assert len(calls) == 2 and not capsys.readouterr().err


def test_failed_conversion_leaves_no_cache(fake_dist):
  del fake_dist

  def convert(path):
    del path
    return {'bad': [1, 2]}

  with pytest.raises(TypeError, match='non-arrays'):
    assets.cached_npz('fake', convert)
  assert not assets.cache_file('fake').exists()


# --------------------------------------------------------------------------
# The real pinned assets.


@pytest.mark.parametrize('name', sorted(assets.ASSETS))
def test_pinned_assets_verify(name):
  assert assets.asset_path(name).is_file()


def test_face_dcgan_state_dict(tmp_path, monkeypatch):
  monkeypatch.setenv('GCJAX_CACHE', str(tmp_path))
  sd = assets.load_state_dict('face_dcgan')
  assert sd['main.0.weight'].shape == (100, 512, 4, 4)
  assert sd['main.1.num_batches_tracked'].dtype == np.int64
  assert len(sd) == 25 and sum(v.size for v in sd.values()) == 3_578_628
  assert assets.load_state_dict('face_dcgan').keys() == sd.keys()  # cached


def test_lpips_numpy_pickle():
  tree = assets.load_numpy_pickle(assets.asset_path('lpips_alexnet'))
  flat = assets.flatten_arrays(tree)
  assert flat['AlexNet_0.Conv_0.kernel'].shape == (11, 11, 3, 64)
  assert all(v.dtype == np.float32 for v in flat.values())


def test_hdf5_asset_has_no_state_dict():
  with pytest.raises(ValueError, match='h5py'):
    assets.load_state_dict('hed_bsds500')

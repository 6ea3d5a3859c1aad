"""Tests for gcjax.npz: the atomic writer never leaves a partial file."""

from unittest import mock

import numpy as np
import pytest

from gcjax import npz


def test_round_trip_creates_folder_and_leaves_no_temp(tmp_path):
  path = tmp_path / 'sub' / 'a.npz'
  arrays = {'params/w': np.arange(6.0).reshape(2, 3), 'n': np.int64(3)}
  npz.save_atomic(path, arrays)
  assert [p.name for p in path.parent.iterdir()] == ['a.npz']
  back = npz.load(path)
  assert back.keys() == arrays.keys()
  np.testing.assert_array_equal(back['params/w'], arrays['params/w'])
  assert (path.stat().st_mode & 0o777) == 0o644


def test_failed_write_keeps_the_old_file(tmp_path):
  path = tmp_path / 'a.npz'
  npz.save_atomic(path, {'x': np.zeros(2)})
  with mock.patch.object(np, 'savez', side_effect=OSError('disk full')):
    with pytest.raises(OSError, match='disk full'):
      npz.save_atomic(path, {'x': np.ones(2)})
  assert [p.name for p in tmp_path.iterdir()] == ['a.npz']
  np.testing.assert_array_equal(npz.load(path)['x'], np.zeros(2))


def test_load_refuses_pickles(tmp_path):
  path = tmp_path / 'o.npz'
  np.savez(path, o=np.array([{'a': 1}], dtype=object))
  with pytest.raises(ValueError):
    npz.load(path)


def test_digest_round_trip_and_damage(tmp_path):
  path = tmp_path / 'c.npz'
  arrays = {'a': np.arange(4.0), 'b/c': np.eye(2, dtype=np.int32)}
  npz.save_atomic(path, arrays, digest=True)
  back = npz.load(path, require_digest=True)
  assert back.keys() == arrays.keys()
  # Same content rewritten (other zip timestamps): same digest.
  line = npz.digest_path(path).read_text()
  npz.save_atomic(path, arrays, digest=True)
  assert npz.digest_path(path).read_text() == line
  # One changed number is caught.
  np.savez(path, a=np.arange(4.0) + [0, 0, 1e-6, 0], **{'b/c': arrays['b/c']})
  with pytest.raises(npz.DamagedFile, match='do not match'):
    npz.load(path)
  # A file written without a digest drops the stale record.
  npz.save_atomic(path, arrays)
  assert not npz.digest_path(path).exists()
  npz.load(path)
  with pytest.raises(npz.DamagedFile, match='no recorded digest'):
    npz.load(path, require_digest=True)


def test_truncated_file_is_damaged_not_a_crash(tmp_path):
  path = tmp_path / 't.npz'
  npz.save_atomic(path, {'x': np.arange(1000.0)}, digest=True)
  data = path.read_bytes()
  for cut in (10, len(data) // 2, len(data) - 5):
    path.write_bytes(data[:cut])
    with pytest.raises(npz.DamagedFile, match='cannot be read'):
      npz.load(path)

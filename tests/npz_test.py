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

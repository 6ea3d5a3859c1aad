"""gcjax.export writes variable files that gcjax.teachers reads back."""

import numpy as np

from gcjax import export, teachers


def test_save_load_variables_round_trip(tmp_path):
  v = {'params': {'conv': {'kernel': np.ones((3, 3, 1, 2), np.float32)}},
       'batch_stats': {'bn': {'mean': np.arange(2.0)}}}
  path = str(tmp_path / 'student.npz')
  export.save_variables(path, v)
  assert [p.name for p in tmp_path.iterdir()] == ['student.npz']
  back = teachers.load_variables(path)
  np.testing.assert_array_equal(back['params']['conv']['kernel'],
                                v['params']['conv']['kernel'])
  np.testing.assert_array_equal(back['batch_stats']['bn']['mean'],
                                v['batch_stats']['bn']['mean'])

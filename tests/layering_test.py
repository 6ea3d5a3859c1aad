"""Import direction (DESIGN): models and metrics stay pure.

Parses the sources with ``ast`` (nothing is imported), so the rules hold for
lazy imports inside functions too:

* ``gcjax/models/*.py`` and ``gcjax/metrics/*.py`` import neither
  ``gcjax.assets`` nor ``gcjax.data`` (metrics load no data sets, models
  read no files), nor the loaders built on them;
* ``models``, ``objectives``, ``langevin``, ``pruning`` and ``materialize``
  import nothing from ``methods``, ``train``, ``data`` or ``main``;
* models do no file I/O (no ``open``, ``os``, ``pathlib``, ``np.load``...).
"""

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / 'gcjax'
# gcjax.npz is allowed in metrics: fid.save_stats/load_stats write/read it.
LOADERS = ('gcjax.assets', 'gcjax.data', 'gcjax.unpickle',
           'gcjax.metric_weights', 'gcjax.convert', 'gcjax.make_classifier',
           'gcjax.teachers')
UPPER = ('gcjax.methods', 'gcjax.train', 'gcjax.data', 'gcjax.main')
FILE_IO_MODULES = ('os', 'pathlib', 'tempfile', 'shutil', 'io', 'pickle',
                   'h5py', 'gcjax.npz', *LOADERS)
FILE_IO_CALLS = ('open', 'load', 'save', 'savez', 'savez_compressed',
                 'fromfile', 'tofile', 'loadtxt', 'savetxt')


def _sources(*parts):
  files = []
  for part in parts:
    p = PKG / part
    files += sorted(p.glob('*.py')) if p.is_dir() else [p.with_suffix('.py')]
  return files


def _imports(path):
  """Every module name `path` imports ('from a import b' gives a and a.b)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module)
      names.update(f'{node.module}.{a.name}' for a in node.names)
  return names


def _hits(path, banned):
  return sorted(n for n in _imports(path)
                if any(n == b or n.startswith(b + '.') for b in banned))


@pytest.mark.parametrize('path', _sources('models', 'metrics'),
                         ids=lambda p: f'{p.parent.name}/{p.name}')
def test_models_and_metrics_import_no_loader(path):
  assert not _hits(path, LOADERS)


@pytest.mark.parametrize('path', _sources('models', 'objectives', 'langevin',
                                          'pruning', 'materialize'),
                         ids=lambda p: f'{p.parent.name}/{p.name}')
def test_lower_layers_do_not_import_upper_ones(path):
  assert not _hits(path, UPPER)


@pytest.mark.parametrize('path', _sources('models'),
                         ids=lambda p: p.name)
def test_models_do_no_file_io(path):
  assert not _hits(path, FILE_IO_MODULES)
  calls = [ast.unparse(n.func) for n in ast.walk(ast.parse(path.read_text()))
           if isinstance(n, ast.Call) and (
               (isinstance(n.func, ast.Name) and n.func.id == 'open') or
               (isinstance(n.func, ast.Attribute) and
                n.func.attr in FILE_IO_CALLS and
                ast.unparse(n.func.value) in ('np', 'numpy', 'jnp')))]
  assert not calls


def test_the_checker_catches_a_lazy_import(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('def f():\n  from gcjax import assets\n  return assets\n')
  assert _hits(bad, LOADERS) == ['gcjax.assets']

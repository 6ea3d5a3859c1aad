"""experiments/op_profile: per-op times of a jitted function, by module."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments import op_profile


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Conv(8, (3, 3), name='first')(x)
    return nn.Dense(4, name='head')(jnp.tanh(x))


def test_jax_ops_names_the_modules_and_groups_them():
  net = _Net()
  x = jnp.ones((2, 16, 16, 3))
  v = net.init(jax.random.key(0), x)
  f = jax.jit(net.apply)
  index = op_profile.hlo_index(f.lower(v, x).compile().as_text())
  assert any('first' in e['what'] for e in index.values())
  rows, wall = op_profile.jax_ops(f, v, x, reps=2)
  assert wall > 0 and rows and all(r['ms'] >= 0 for r in rows)
  assert all(r['name'] in index for r in rows)
  assert rows == sorted(rows, key=lambda r: -r['ms'])
  whats = ' '.join(r['what'] for r in rows)
  assert 'first' in whats and 'head' in whats
  groups = op_profile.grouped(rows)
  assert abs(sum(g['ms'] for g in groups) - sum(r['ms'] for r in rows)) < 1e-9
  assert sum(g['n'] for g in groups) == len(rows)


def test_union_counts_overlapping_thread_spans_once():
  assert op_profile._union_ns([(0, 10), (5, 12), (20, 25)]) == 17

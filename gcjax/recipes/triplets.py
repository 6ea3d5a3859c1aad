"""KDIT's style-mixed triplets from a frozen style-based teacher (pure).

z1, z2 -> w1 = M_T(z1), w2 = M_T(z2); x1 = G'_T(w1), x2 = G'_T(w2) and
y = G'_T(Phi(w1, w2)), where Phi feeds w1 to the synthesis layers below
``cutoff`` and w2 from it on (the paper's first four layers: ``cutoff=4``).
The teacher discriminator's block features of x1, x2 and y are kept with
the generator's per-resolution features, so the distillation losses read
them without running the teacher again. Runs inside the jitted step: the
triplets are made online, one minibatch at a time (paper footnote 2).

Only the public surface of ``gcjax.models.stylegan`` is used: the
generator's ``map`` and ``synthesize`` methods and ``mix_styles``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gcjax.models import stylegan

PyTree = Any


class Triplets(NamedTuple):
  """One minibatch of triplets and the teacher's features of each image.

  Images are [B, R, R, C]; ``g_*`` are the generator's ``res<r>`` maps,
  ``d_*`` the discriminator's features (``block<r>``, ``penultimate``).
  """
  x1: jax.Array
  x2: jax.Array
  y: jax.Array
  g_x1: dict
  g_x2: dict
  g_y: dict
  d_x1: dict
  d_x2: dict
  d_y: dict


def mixed_styles(gen: stylegan.StyleGenerator, g_vars: PyTree,
                 z1: jax.Array, z2: jax.Array, cutoff: int):
  """(ws1, ws2, ws_mix), each [B, num_ws, w_dim], of latents z1, z2."""
  n = gen.num_ws
  if not 0 <= cutoff <= n:
    raise ValueError(f'mixing cutoff must be in [0, {n}], got {cutoff}')
  w1 = gen.apply(g_vars, z1, method='map')
  w2 = gen.apply(g_vars, z2, method='map')
  cut = jnp.full((z1.shape[0],), cutoff, jnp.int32)
  rep = lambda w: jnp.repeat(w[:, None], n, axis=1)  # noqa: E731
  return rep(w1), rep(w2), stylegan.mix_styles(w1, w2, cut, n)


def make(gen: stylegan.StyleGenerator, g_vars: PyTree,
         disc: stylegan.StyleDiscriminator, d_vars: PyTree,
         z1: jax.Array, z2: jax.Array, cutoff: int) -> Triplets:
  """Style-mixed triplets of latents z1, z2 [B, z_dim] (no gradients)."""
  ws1, ws2, wsm = mixed_styles(gen, g_vars, z1, z2, cutoff)
  b = z1.shape[0]
  # One synthesis and one D pass over the three images stacked.
  img, g_feats = gen.apply(g_vars, jnp.concatenate([ws1, ws2, wsm]),
                           method='synthesize')
  _, d_feats = disc.apply(d_vars, img)

  def split(tree):
    return [jax.tree.map(lambda a, i=i: a[i * b:(i + 1) * b], tree)
            for i in range(3)]

  (x1, x2, y) = split(img)
  g1, g2, gy = split(g_feats)
  d1, d2, dy = split(d_feats)
  return jax.lax.stop_gradient(Triplets(x1, x2, y, g1, g2, gy, d1, d2, dy))


def latents(key: jax.Array, rows: int, z_dim: int):
  """(z1, z2): independent N(0, I) latents [rows, z_dim]."""
  k1, k2 = jax.random.split(key)
  return (jax.random.normal(k1, (rows, z_dim)),
          jax.random.normal(k2, (rows, z_dim)))

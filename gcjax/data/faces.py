"""edges2faces: an offline paired RGB set made by the pretrained face DCGAN.

64x64 faces are sampled with fixed seeds from the face DCGAN shipped by
``gan-face-generate`` (``gcjax.convert.load_face_dcgan``) and paired with
their Canny edge maps (black lines on white, as edges2shoes). The latents of
a split come from ``numpy.random.default_rng([seed, split index])``, so
train and test never share a face and the same arguments give the same
bytes. Made once and cached as npz (like the FID statistics), keyed by all
arguments.
"""

from __future__ import annotations

import numpy as np

from gcjax import npz
from gcjax.data import embedded

NZ = 100
_SPLITS = ('train', 'test')
_CHUNK = 250   # faces per generator call (fixed: the bytes depend on it).


def generate_faces(z: np.ndarray) -> np.ndarray:
  """Face DCGAN images for latents ``z`` [N, 100] -> uint8 [N, 64, 64, 3]."""
  import jax

  from gcjax import convert
  module, variables = convert.load_face_dcgan()
  fwd = jax.jit(lambda v, z: module.apply(v, z, train=False)[0])
  out = np.zeros((len(z), 64, 64, 3), np.uint8)
  for i in range(0, len(z), _CHUNK):
    x = np.asarray(fwd(variables, z[i:i + _CHUNK]), np.float32)
    out[i:i + len(x)] = np.clip(np.rint((x + 1.0) * 127.5), 0, 255)
  return out


def rgb_edges(images: np.ndarray, sigma: float) -> np.ndarray:
  """Canny edges of uint8 [N, H, W, 3] RGB images (on Rec. 709 luma).

  Returns:
    uint8 [N, H, W, 3]: 0 on edges, 255 elsewhere, gray repeated.
  """
  luma = np.tensordot(images.astype(np.float32), np.asarray(
      (0.2125, 0.7154, 0.0721), np.float32), axes=1)
  gray = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
  edges = np.stack([embedded.edge_map(g, sigma) for g in gray]) if len(
      gray) else np.zeros(images.shape[:3], np.uint8)
  return np.repeat(edges[..., None], 3, axis=-1)


def load_edges2faces(split: str = 'train', n_train: int = 8000,
                     n_test: int = 1000, seed: int = 0,
                     canny_sigma: float = 1.5, limit: int = -1,
                     use_cache: bool = True) -> dict[str, np.ndarray]:
  """edges -> face pairs at 64x64 RGB.

  Args:
    split: 'train' or 'test'.
    n_train, n_test: pairs per split (the test split is FID's reference:
      keep it >= 1000 for a meaningful FID).
    seed: latent seed.
    canny_sigma: Gaussian sigma of Canny on the 64x64 luma.
    limit: keep only the first ``limit`` pairs (-1 keeps all; the cache
      holds the whole split).
    use_cache: read and write the npz cache.

  Returns:
    dict(src=uint8 [N, 64, 64, 3] edge map, black lines on white;
    tgt=uint8 [N, 64, 64, 3] face; label=int32 [N] row index).
  """
  if split not in _SPLITS:
    raise ValueError(f'split must be one of {_SPLITS}, got {split!r}')
  n = n_train if split == 'train' else n_test
  if n < 1:
    raise ValueError(f'edges2faces: n_{split} must be >= 1, got {n}')
  args = dict(split=split, n=n, seed=seed, canny_sigma=float(canny_sigma),
              chunk=_CHUNK)
  path = embedded._cache_path('edges2faces', args)
  out = embedded._load_npz(path) if use_cache else None
  if out is None:
    rng = np.random.default_rng([seed, _SPLITS.index(split)])
    z = rng.standard_normal((n, NZ)).astype(np.float32)
    tgt = generate_faces(z)
    out = dict(src=rgb_edges(tgt, canny_sigma), tgt=tgt,
               label=np.arange(n, dtype=np.int32))
    if use_cache:
      npz.save_atomic(path, out)
  if limit is not None and limit >= 0:
    out = {k: v[:limit] for k, v in out.items()}
  return out

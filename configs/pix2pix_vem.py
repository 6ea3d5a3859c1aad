"""OMGD + VEM on Pix2Pix: ``pix2pix_omgd.py`` with ``mi.kind='vem'``.

Run:
  python -m gcjax.main --config=configs/pix2pix_vem.py          # default
  python -m gcjax.main --config=configs/pix2pix_vem.py:smoke    # seconds
  python -m gcjax.main --config=configs/pix2pix_vem.py:paper    # edges2shoes

The VEM section is ``common.mi('vem')``: the authors' energy net
(``ebm_arch='vem'``, C0=64 in :paper and :faces, 16 in the CPU default),
K=10, eta=100, sigma=0.005, alpha=0.05, the chain clipped once at the end;
results carry the ``ebm_probe`` figures. Presets and all other settings:
see pix2pix_omgd.py (``:faces`` is the VEM ablation's RGB setting).
"""

import ml_collections

from configs import pix2pix_omgd

PRESETS = pix2pix_omgd.PRESETS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return pix2pix_omgd.get_config(arg, mi='vem', source=__file__)

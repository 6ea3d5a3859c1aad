"""OMGD + CRD on Pix2Pix: ``pix2pix_omgd.py`` with ``mi.kind='crd'``.

Run:
  python -m gcjax.main --config=configs/pix2pix_crd.py          # default
  python -m gcjax.main --config=configs/pix2pix_crd.py:smoke    # seconds
  python -m gcjax.main --config=configs/pix2pix_crd.py:paper    # edges2shoes

Presets and all other settings: see pix2pix_omgd.py.
"""

import ml_collections

from configs import pix2pix_omgd

PRESETS = pix2pix_omgd.PRESETS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return pix2pix_omgd.get_config(arg, mi='crd', source=__file__)

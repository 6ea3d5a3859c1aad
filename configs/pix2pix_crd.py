"""OMGD + CRD on Pix2Pix: ``pix2pix_omgd.py`` with ``mi.kind='crd'``.

Run:
  python -m gcjax.main --config=configs/pix2pix_crd.py          # default
  python -m gcjax.main --config=configs/pix2pix_crd.py:smoke    # seconds
  python -m gcjax.main --config=configs/pix2pix_crd.py:paper    # edges2shoes

Presets and all other settings: see pix2pix_omgd.py.
"""

import ml_collections

from gcjax import config_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_base.sibling('pix2pix_omgd', __file__).build('crd', arg)

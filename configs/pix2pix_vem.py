"""OMGD + VEM on Pix2Pix: ``pix2pix_omgd.py`` with ``mi.kind='vem'``.

Run:
  python -m gcjax.main --config=configs/pix2pix_vem.py          # default
  python -m gcjax.main --config=configs/pix2pix_vem.py:smoke    # seconds
  python -m gcjax.main --config=configs/pix2pix_vem.py:paper    # edges2shoes

Presets and all other settings: see pix2pix_omgd.py.
"""

import ml_collections

from gcjax import config_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_base.sibling('pix2pix_omgd', __file__).build('vem', arg)

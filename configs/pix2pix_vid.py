"""OMGD + VID on Pix2Pix: ``pix2pix_omgd.py`` with ``mi.kind='vid'``.

Run:
  python -m gcjax.main --config=configs/pix2pix_vid.py          # default
  python -m gcjax.main --config=configs/pix2pix_vid.py:smoke    # seconds
  python -m gcjax.main --config=configs/pix2pix_vid.py:paper    # edges2shoes

Presets and all other settings: see pix2pix_omgd.py.
"""

import ml_collections

from configs import pix2pix_omgd

PRESETS = pix2pix_omgd.PRESETS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return pix2pix_omgd.get_config(arg, mi='vid', source=__file__)

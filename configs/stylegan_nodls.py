"""The No-DLS baseline of ``configs/stylegan_dls.py``: the same code with
the latent scale fixed at s = 1 (the encoder loss is then plain MSE).

Run:
  python -m gcjax.main --config=configs/stylegan_nodls.py          # default
  python -m gcjax.main --config=configs/stylegan_nodls.py:smoke
  python -m gcjax.main --config=configs/stylegan_nodls.py:paper

Presets: those of ``configs/stylegan_dls.py`` (default, smoke, paper) with
``dls.enabled=False``. The paper reports the encoder loss of this run
staying near 1 while the DLS run's falls.
"""

from configs import stylegan_dls

PRESETS = stylegan_dls.PRESETS


def get_config(arg: str | None = None):
  c = stylegan_dls.get_config(arg)
  c.dls.enabled = False
  return c

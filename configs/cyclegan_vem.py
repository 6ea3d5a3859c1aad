"""OMGD + VEM on CycleGAN: ``cyclegan_omgd.py`` with ``mi.kind='vem'``.

The energy model scores (t+, s) pairs with t+ the teacher output (unpaired
data has no target); the student adds lambda_MI [E(t+, s) - E(t~, s)].

Run:
  python -m gcjax.main --config=configs/cyclegan_vem.py          # default
  python -m gcjax.main --config=configs/cyclegan_vem.py:smoke    # seconds
  python -m gcjax.main --config=configs/cyclegan_vem.py:paper \\
      --config.data.args.root=/path/to/horse2zebra

Default: compress the pretrained vintagify teacher (11.4M params, 56.8G
literature MACs at 256x256) into the 0.137M-param MobileResNet student on
32x32 photo crops, about 10 minutes on 2 CPU cores; results.md lists MACs,
params, latency, agreement with the teacher (PSNR/SSIM/LPIPS) and FID/KID of
student outputs against teacher outputs on held-out photos. Presets and all
other settings: see cyclegan_omgd.py.
"""

import ml_collections

from configs import cyclegan_omgd

PRESETS = cyclegan_omgd.PRESETS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return cyclegan_omgd.get_config(arg, mi='vem', source=__file__)

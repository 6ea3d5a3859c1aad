"""Pix2Pix MI ablation (VEM paper Tables 1 and 4 in miniature).

none / vid / crd / vem on the default edges2fashion preset, 3 seeds each,
same budget. A thin front end of ``mi_ablation.py`` (same flags; extra
``--set`` overrides are passed through):

  python experiments/pix2pix_mi_ablation.py [--seeds=0,1,2] [--set ...]

Writes experiments/results/pix2pix_omgd_mi_ablation.{md,json,png}.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mi_ablation  # noqa: E402

if __name__ == '__main__':
  if not any(a.startswith('--config') for a in sys.argv[1:]):
    sys.argv.insert(1, '--config=configs/pix2pix_omgd.py')
  mi_ablation.main()

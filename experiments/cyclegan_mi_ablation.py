"""CycleGAN MI ablation (VEM paper Tables 2 and 4 in miniature).

none / vid / crd / vem on the ``cyclegan_omgd.py`` default preset (the
pretrained vintagify teacher distilled into the MobileResNet ngf 16 student
on 32x32 photo crops), 3 seeds each, the same budget. A thin front end of
``mi_ablation.py`` (same flags; ``--set`` overrides pass through):

  python experiments/cyclegan_mi_ablation.py [--seeds=0,1,2] [--set ...]
      [--drop_evals=fid_ref,lpips]

Writes experiments/results/cyclegan_omgd_mi_ablation.{md,json,png}: mean ±
std over seeds of the student's agreement with the teacher on the held-out
photos (L1, PSNR, SSIM; LPIPS and FID/KID vs teacher outputs unless
dropped).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mi_ablation  # noqa: E402

if __name__ == '__main__':
  if not any(a.startswith('--config') for a in sys.argv[1:]):
    sys.argv.insert(1, '--config=configs/cyclegan_omgd.py')
  mi_ablation.main()

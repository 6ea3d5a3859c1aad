"""CycleGAN MI ablation (VEM paper Tables 2 and 4 in miniature).

none / vid / crd / vem on the ``cyclegan_omgd.py`` default preset (the
pretrained vintagify teacher distilled into the MobileResNet ngf 16 student
on 32x32 photo crops), 3 seeds each, the same budget. A thin front end of
``mi_ablation.py`` (same flags; ``--config.*`` overrides apply to
every run):

  python -m experiments.cyclegan_mi_ablation [--seeds=0,1,2] \\
      [--config.KEY=VALUE ...] [--drop_evals=fid_ref,lpips]

Writes experiments/results/cyclegan_omgd_mi_ablation.{md,json,png}: mean ±
std over seeds of the student's agreement with the teacher on the held-out
photos (L1, PSNR, SSIM; LPIPS and FID/KID vs teacher outputs unless
dropped).
"""

from absl import flags

from experiments import mi_ablation

flags.adopt_module_key_flags(mi_ablation)

if __name__ == '__main__':
  mi_ablation.run('configs/cyclegan_omgd.py')

"""Pix2Pix MI ablation (VEM paper Tables 1 and 4 in miniature).

none / vid / crd / vem on the default edges2fashion preset, 3 seeds each,
same budget. A thin front end of ``mi_ablation.py`` (same flags;
``--config.*`` overrides apply to every run):

  python -m experiments.pix2pix_mi_ablation [--seeds=0,1,2] \\
      [--config=configs/pix2pix_omgd.py:PRESET] [--config.KEY=VALUE ...]

Writes experiments/results/pix2pix_omgd_mi_ablation.{md,json,png}.
"""

from absl import flags

from experiments import mi_ablation

flags.adopt_module_key_flags(mi_ablation)

if __name__ == '__main__':
  mi_ablation.run('configs/pix2pix_omgd.py')

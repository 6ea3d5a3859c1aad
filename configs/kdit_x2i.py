"""KDIT with the X2I student (a class-conditional generator): stage 1
distils a style-based teacher without data through a semantic encoder
(D_T without its logit layer) and the bounded semantic diversity loss,
stage 2 fine-tunes it with the class label as the condition (method kdit,
student x2i).

Run (python -m experiments.kdit_report chains all of it):
  python -m gcjax.main --config=configs/kdit_x2i.py --workdir=runs/x1
      # stage 1; trains configs/kdit_teacher.py into runs/x1/teacher first
      # (reused when there); or give one: --config.teacher.init=run:runs/t
  python -m gcjax.main --config=configs/kdit_x2i.py:stage2,n=10 \\
      --workdir=runs/x2 --config.student.init=run:runs/x1    # stage 2
  python -m gcjax.main --config=configs/kdit_x2i.py:scratch,n=10  # baseline
  python -m gcjax.main --config=configs/kdit_x2i.py:smoke         # seconds

Options and presets: those of ``configs/kdit_i2i.py`` (``guide`` is unused
here). Student: noise 32, c 32 (the teacher D's penultimate width; stage 1
checks it), teacher 4x4 feature of width 32 added at 4x4 (footnote 4),
width 16. alpha_l = beta = 0.1 (features narrower than 128 channels),
lambda_srl 0.1 with the per-example difference clipped at 0.5
(``kdit.srl_margin``; Eq. 7 made bounded). Stage 2 learns a class
embedding (10 x 32) as c.
"""

import ml_collections

from configs import common, kdit_i2i

PRESETS = kdit_i2i.PRESETS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, presets=PRESETS, source=__file__,
                         **kdit_i2i.options())
  c = kdit_i2i.kdit_base('x2i')
  c.student.z_dim = 32
  kdit_i2i.apply_options(c, arg, arg.preset)
  if arg.preset == 'smoke':
    c.student.z_dim = 8
  return c

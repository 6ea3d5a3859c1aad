"""KDIT with the I2I student (StarGANv2-like, reference-guided): stage 1
distils a style-based teacher without data, stage 2 fine-tunes it on N
Fashion-MNIST images per class (method kdit, student i2i).

Run (python -m experiments.kdit_report chains all of it):
  python -m gcjax.main --config=configs/kdit_i2i.py --workdir=runs/s1
      # stage 1; trains configs/kdit_teacher.py into runs/s1/teacher first
      # (reused when there); or give one: --config.teacher.init=run:runs/t
  python -m gcjax.main --config=configs/kdit_i2i.py:stage2,n=10 \\
      --workdir=runs/s2 --config.student.init=run:runs/s1    # stage 2
  python -m gcjax.main --config=configs/kdit_i2i.py:scratch,n=10  # baseline
  python -m gcjax.main --config=configs/kdit_i2i.py:smoke         # seconds

Options (compose: ``:smoke,stage2``, ``:scratch,n=50,guide=latent``):
  stage2: fine-tune on data; needs ``student.init=run:<stage-1 workdir>``
    (its ``student``, ``mapping`` and ``disc`` exports).
  scratch: stage 2 from random networks (the from-scratch baseline).
  n: training images per class in stage 2 (10 or 50 in the report).
  guide: reference (E_R on a reference image) or latent (mapping net).

Presets:
  default: teacher from ``teacher.init``; empty: a ``teacher.train``
    (configs/kdit_teacher.py) run trained first in <workdir>/teacher,
    student width 16 (content 8x8x32, style 32), batch 16, Adam (0, 0.99)
    lr 1e-4 for G and D (the paper's betas), gamma = tau = alpha = beta =
    0.1 and lambda_adv = lambda_kdl = 1 (Eqs. 1-5), mixing cutoff 4
    (footnote 1). Stage 1: 2000 steps, agreement with the teacher on 256
    triplets. Stage 2: 2000 steps, R1 1, mFID/mKID on 1000 test images
    (100 per class), RC/FC, LPIPS diversity between two references of a
    class.
  smoke: a random 16x16 teacher (``teacher.random``), 3 steps.
"""

import ml_collections

from configs import common

PRESETS = ('default', 'smoke')


def options():
  """The ``:arg`` options of both KDIT configs and their defaults."""
  return dict(stage2=False, scratch=False, n=10, guide='reference')


def kdit_base(student: str) -> ml_collections.ConfigDict:
  """Every ``kdit`` key with its default."""
  c = common.base()
  c.method = 'kdit'
  c.kdit = ml_collections.ConfigDict({
      'student': student, 'stage': 1, 'guide': 'reference', 'cutoff': 4,
      'lambda_adv': 1.0, 'lambda_kdl': 1.0, 'gamma': 0.1, 'tau': 0.1,
      'alpha': 0.1, 'beta': 0.1,
      # X2I: Eq. 7 weight and the margin where its reward stops.
      'lambda_srl': 0.1, 'srl_margin': 0.5,
      # Stage 2 (StarGANv2's style reconstruction and cycle terms; R1).
      'lambda_sty': 1.0, 'lambda_cyc': 1.0, 'r1_weight': 1.0,
      # Stage 2 without student.init is refused unless this is set (the
      # baseline), so a forgotten init never passes for a distilled run.
      'from_scratch': False})
  c.teacher = ml_collections.ConfigDict({
      # run:<kdit_teacher workdir> (its generator; its disc is found next
      # to it unless disc_init names one). random: a random teacher of the
      # fields below (smoke runs and tests). train: with init empty, the
      # config trained first into <workdir>/teacher (gcjax.chain; reused
      # when there), train_steps > 0 overriding its total_steps.
      'init': '', 'disc_init': '', 'random': False,
      'train': 'configs/kdit_teacher.py', 'train_steps': 0,
      'z_dim': 64, 'w_dim': 128, 'map_layers': 4, 'ch_base': 512,
      'ch_max': 32, 'resolution': 32, 'channels': 1})
  c.student = ml_collections.ConfigDict({
      'init': '', 'ch': 16, 'style_dim': 32, 'z_dim': 64,
      'mapping_hidden': 64, 'num_classes': 10, 'c_dim': 32, 't_ch': 32})
  c.disc = ml_collections.ConfigDict({'ch': 16})
  c.optim = ml_collections.ConfigDict({
      'g': common.adam(1e-4, 0.0, 0.99, decay='none'),
      'd': common.adam(1e-4, 0.0, 0.99, decay='none')})
  c.total_steps = 2000
  c.log_every = 50
  c.ckpt_every = 500
  c.eval_batch_size = 64
  return c


def fashion(n: int, batch_size: int, resolution: int, test_limit: int):
  """Fashion-MNIST with ``n`` training images per class (keys img, label)."""
  return ml_collections.ConfigDict({
      'name': 'fashion', 'train_split': 'train', 'test_split': 'test',
      'batch_size': batch_size, 'seed': 0, 'flip': False, 'jitter': 0,
      'args': {'resolution': resolution, 'channels': 1, 'limit': -1,
               'per_class': n},
      'train_limit': 0, 'test_limit': test_limit,
      **common.input_options()})


def stage1_evals(limit: int, cost: bool = True):
  e = ml_collections.ConfigDict({
      'image': {**common.image_eval(('teacher',)), 'pred': ('student',),
                'limit': limit}})
  if cost:
    e.cost = {**common.cost_eval(16, 5), 'pred': ('student', 'disc')}
  return e


def stage2_evals(limit: int, fc_steps: int, smoke: bool = False):
  e = ml_collections.ConfigDict({
      'class_acc': {'type': 'class_acc', 'every_steps': 0,
                    'pred': ('student',), 'limit': limit,
                    'fc_steps': fc_steps},
      'lpips': {'type': 'lpips', 'every_steps': 0, 'pred': ('student',),
                'target': ('student_alt',), 'net': 'alex', 'limit': limit}})
  if not smoke:
    e.class_fid = {'type': 'class_fid', 'every_steps': 0,
                   'pred': ('student',), 'limit': limit, 'batch_size': 50}
  else:
    del e['lpips']
  return e


def apply_options(c, arg, preset: str) -> None:
  """Stage, data and evaluators from the preset and options."""
  common.check_choice(arg, 'guide', ('reference', 'latent'), __file__)
  c.kdit.guide = arg.guide
  smoke = preset == 'smoke'
  if smoke:
    c.teacher.update(random=True, z_dim=16, w_dim=16, map_layers=2,
                     ch_base=64, ch_max=8, resolution=16)
    c.student.update(ch=4, style_dim=8, z_dim=16, mapping_hidden=8,
                     c_dim=8, t_ch=8)
    c.disc.ch = 4
    c.total_steps = 3
    c.log_every = c.ckpt_every = 3
    c.n_samples = 4
    c.eval_batch_size = 8
  if not (arg.stage2 or arg.scratch):
    c.data = common.no_data(batch_size=8 if smoke else 16,
                            eval_rows=8 if smoke else 256)
    c.evals = stage1_evals(0, cost=True)
    if smoke:
      c.evals.cost.update(latency_batch=2, latency_iters=2)
    return
  c.kdit.stage = 2
  c.teacher.train = ''                         # stage 2 has no teacher
  res = c.teacher.resolution
  c.data = fashion(arg.n, 8 if smoke else 16, res, 16 if smoke else 1000)
  c.evals = stage2_evals(0, 5 if smoke else 300, smoke)
  c.kdit.from_scratch = bool(arg.scratch)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, presets=PRESETS, source=__file__,
                         **options())
  c = kdit_base('i2i')
  apply_options(c, arg, arg.preset)
  return c

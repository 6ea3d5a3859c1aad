"""OMGD task ``cyclegan``: distill a CycleGAN ResNet generator.

Two teacher modes, picked by ``config.teacher.init`` (a ``gcjax.teachers``
spec):

* ``''`` (online, as OMGD): the teacher G_A (ResNet or MobileResNet) is
  trained in the same run with the full CycleGAN recipe
  (``recipes.cycle.cycle_update``: G_B, D_A, D_B, cycle and identity losses,
  image pools) on unpaired batches ``a``/``b``; each step the student then
  distills the teacher's pre-update output G_A(a) and feature maps.
* a spec, e.g. ``'pretrained:vintagify'`` (the photo -> vintage generator)
  or ``'run:<workdir>:g_a'`` (a ``gan`` cyclegan run's A -> B generator):
  frozen, passed through ``Method.frozen`` and never checkpointed; only the
  domain-A batch is read.

``config.student.init`` warm-starts the student. The student
(GAN-Compression's MobileResNet, ngf 16) is updated by
``recipes.distill.student_update``: OMGD's SSIM + style + perceptual + TV
losses, feature distillation through 1x1-conv adapters at
``loss.feature_layers`` (OMGD: the second downsampling and residual blocks
3, 6 and 9), and the MI add-on with t+ = the teacher output.
"""

from __future__ import annotations

from functools import partial

import flax
import jax
import jax.numpy as jnp

from gcjax import errors, teachers
from gcjax.methods.base import (
  Method,
  NetState,
  Network,
  apply_net,
  create_net_state,
  make_adam,
  require_data,
  variables_of,
  warm_start,
)
from gcjax.objectives import mi as mi_lib
from gcjax.recipes import cycle as cg
from gcjax.recipes import distill as dc
from gcjax.recipes import nets as nets_lib


@flax.struct.dataclass
class State:
  step: jax.Array
  teacher: object     # recipes.cycle.CycleState (online) or {} (frozen)
  student: NetState
  adapt: NetState
  mi: object


def create_state(key, a_shape, b_shape, *, cycle, student_module,
                 adapt_module, txs, mi, pool_size: int,
                 student_init=None) -> State:
  t_key, s_key, a_key, m_key = jax.random.split(key, 4)
  src = jnp.zeros((1, *a_shape), jnp.float32)
  teacher = {}
  if cycle is not None:
    nets, cycle_txs = cycle
    teacher = cg.create_cycle_state(t_key, a_shape, b_shape, nets=nets,
                                    txs=cycle_txs, pool_size=pool_size)
  student = warm_start(
      create_net_state(student_module, txs['s'],
                       {'params': s_key, 'dropout': s_key}, src),
      txs['s'], student_init)
  if adapt_module.out_channels:
    _, feats = student_module.apply(variables_of(student), src)
    maps = tuple(feats[n] for n in adapt_module.layers)
    adapt = create_net_state(adapt_module, txs['adapt'], a_key, maps)
  else:
    adapt = NetState(params={}, opt_state=txs['adapt'].init({}))
  return State(step=jnp.zeros((), jnp.int32), teacher=teacher,
               student=student, adapt=adapt, mi=mi.init(m_key))


def train_step(state: State, batch, key, frozen, *, cycle, teacher_module,
               student_module, adapt_module, txs, w, mi, a_key: str,
               b_key: str, tv_reduction: str):
  """(Online: one CycleGAN teacher step, then) one student step."""
  key = jax.random.fold_in(key, state.step)
  t_key, s_key = jax.random.split(key)
  src = batch[a_key]
  metrics = {}
  if cycle is not None:
    nets, cycle_txs, cw = cycle
    teacher, m_t, (t_img, t_feats) = cg.cycle_update(
        state.teacher, src, batch[b_key], t_key, nets=nets, txs=cycle_txs,
        w=cw)
    metrics.update({f't/{k}': v for k, v in m_t.items()})
  else:
    teacher = state.teacher
    t_img, t_feats = teacher_module.apply(frozen['teacher'], src, train=False)

  def student_fwd(params, batch_stats, x, k):
    return apply_net(student_module, params, batch_stats, x, train=True,
                     key=k)

  student, adapt, mi_state, m_s = dc.student_update(
      state.student, state.adapt, state.mi, src, [t_img], t_feats, t_img,
      s_key, frozen, student_fwd=student_fwd, adapt_module=adapt_module,
      tx_student=txs['s'], tx_adapt=txs['adapt'], w=w, mi=mi,
      tv_reduction=tv_reduction)
  metrics.update(m_s)
  new = state.replace(step=state.step + 1, teacher=teacher, student=student,
                      adapt=adapt, mi=mi_state)
  return new, metrics


def _student_fwd(state, batch, frozen, *, module, a_key):
  del frozen
  (img, _), _ = apply_net(module, state.student.params,
                          state.student.batch_stats, batch[a_key],
                          train=False)
  return img


def _online_teacher_fwd(state, batch, frozen, *, module, a_key):
  del frozen
  (img, _), _ = apply_net(module, state.teacher.g_a.params,
                          state.teacher.g_a.batch_stats, batch[a_key],
                          train=False)
  return img


def _frozen_teacher_fwd(state, batch, frozen, *, module, a_key):
  del state
  return module.apply(frozen['teacher'], batch[a_key], train=False)[0]


def make(config, sample_batch) -> Method:
  """Builds omgd/cyclegan from config.cyclegan/teacher/student/disc/loss/mi.

  Online mode reads domains A and B (``config.cyclegan.domains``); a frozen
  teacher only A. Evaluated: 'teacher' (A -> B) and 'student'.
  """
  require_data(sample_batch, 'omgd (cyclegan)')
  if config.mi.positive != 'teacher':
    raise errors.UserError(
        "config.mi.positive must be 'teacher' for CycleGAN (unpaired data "
        f"has no target), got {config.mi.positive!r}")
  loaded = teachers.load(config.teacher.init)
  online = loaded is None
  a_key, b_key = cg.domain_keys(config, sample_batch, need_b=online)
  a_shape = tuple(sample_batch[a_key].shape[1:])
  frozen = {}
  if online:
    b_shape = tuple(sample_batch[b_key].shape[1:])
    nets, cycle_txs, cw = cg.make_cycle(config, a_shape, b_shape,
                                        config.teacher)
    teacher = nets.g_a
    cycle = (nets, cycle_txs, cw)
  else:
    teacher, frozen['teacher'] = loaded
    b_shape = (*a_shape[:2], teacher.out_ch)
    cycle = None
  out_ch = b_shape[-1]
  student = nets_lib.resnet_generator(config.student, out_ch)
  student_init = teachers.load_like(
      config.student.init, student, jnp.zeros((1, *a_shape), jnp.float32),
      'student.init')

  lc = config.loss
  layers = tuple(lc.feature_layers)
  x = jax.ShapeDtypeStruct((1, *a_shape), jnp.float32)
  t_feats = jax.eval_shape(
      lambda x: teacher.init_with_output(jax.random.key(0), x)[0][1], x)
  missing = [n for n in layers if n not in t_feats]
  if missing:
    raise errors.UserError(
        f'config.loss.feature_layers: {missing} are not ResNet generator '
        f'feature maps; available: {sorted(t_feats)}')
  adapt = dc.Adapters(out_channels=tuple(t_feats[n].shape[-1] for n in layers),
                      layers=layers)
  o, n = config.optim, config.total_steps
  txs = {'s': make_adam(**o.s, total_steps=n),
         'adapt': make_adam(**o.s, total_steps=n)}
  mi = mi_lib.make_mi_from_config(config.mi, t_shape=b_shape,
                                  s_shape=b_shape, total_steps=n)
  w = dc.StudentWeights(ssim=lc.ssim, style=lc.style,
                        perceptual=lc.perceptual, tv=lc.tv,
                        feature=lc.feature, l1=lc.l1,
                        feature_layers=layers,
                        style_layers=tuple(lc.style_layers))
  if dc.uses_vgg(w):
    from gcjax import metric_weights
    frozen['vgg'] = metric_weights.load_vgg16()

  if online:
    t_pred = partial(_online_teacher_fwd, module=teacher, a_key=a_key)
  else:
    t_pred = partial(_frozen_teacher_fwd, module=teacher, a_key=a_key)

  def finalize(state, frozen):
    out = {'student': Network(student, variables_of(state.student), a_shape,
                              section='student')}
    if online:
      c = state.teacher
      out.update(
          teacher=Network(teacher, variables_of(c.g_a), a_shape,
                          section='teacher'),
          g_b=Network(cycle[0].g_b, variables_of(c.g_b), b_shape,
                      section='teacher'),
          d_a=Network(cycle[0].d_a, variables_of(c.d_a), b_shape,
                      section='disc'),
          d_b=Network(cycle[0].d_b, variables_of(c.d_b), a_shape,
                      section='disc'))
    else:
      out['teacher'] = Network(teacher, frozen['teacher'], a_shape,
                               section='teacher')
    if mi.critic is not None:   # VEM: the energy net, for evaluation probes
      module, v = mi.critic(state.mi)
      out['ebm'] = Network(module, v, (*b_shape[:-1], 2 * b_shape[-1]),
                           section='mi')
    return out

  init = partial(create_state, a_shape=a_shape, b_shape=b_shape,
                 cycle=None if cycle is None else cycle[:2],
                 student_module=student, adapt_module=adapt, txs=txs, mi=mi,
                 pool_size=config.cyclegan.pool_size,
                 student_init=student_init)
  step = partial(train_step, cycle=cycle, teacher_module=teacher,
                 student_module=student, adapt_module=adapt, txs=txs, w=w,
                 mi=mi, a_key=a_key, b_key=b_key,
                 tv_reduction=lc.tv_reduction)
  return Method(
      init=init, train_step=step,
      predict={'teacher': t_pred,
               'student': partial(_student_fwd, module=student, a_key=a_key)},
      finalize=finalize,
      export=(('student', 'teacher', 'g_b', 'd_a', 'd_b') if online
              else ('student',)),
      sample_rows=(a_key, 'teacher', 'student'), frozen=frozen or None)

"""OMGD task ``pix2pix``: online distillation of Pix2Pix U-Nets (+ MI add-on).

Each step (OMGD, Ren et al. 2021, as VEM builds on it):
1. the teacher(s) run once in train mode; the shared PatchGAN is updated on
   (src, tgt) vs (src, teacher output);
2. each teacher is updated with the GAN loss against the updated D plus
   ``lambda_l1`` * L1 to the target (gradients through the saved VJPs);
3. the MI critic (``config.mi.kind``: none | vem | vid | crd) is updated on
   (t+, stop_gradient(student output)); for VEM this runs the Langevin chain;
4. the student is updated from the teachers only (it never sees D;
   ``distill_lib.student_update``, shared with the CycleGAN task):
   sum over teachers of ssim * (1 - SSIM) + style * Gram-L1(VGG16) +
   perceptual * L1(VGG16 relu2_2) + tv * TV, plus ``feature`` * MSE of
   channel means between adapted student maps and the wide teacher's maps,
   plus the MI student term (``gcjax.objectives.mi``).

``config.teacher.init`` / ``config.student.init`` (``gcjax.teachers``
specs, e.g. ``run:<workdir>`` of a ``gan`` run) warm-start the wide teacher
(still trained online) and the student. Exports ``student``, ``teacher``
(and ``teacher_deep``) and ``disc``; with VEM, ``finalize`` also returns the
energy net as ``'ebm'`` (not exported) for the ``ebm_probe`` evaluator.

t+ is the real target on paired data (``mi.positive='target'``, the paper's
choice) or the wide teacher's output (``'teacher'``).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from gcjax import errors
from gcjax import teachers as teachers_lib
from gcjax.methods.base import (
  Method,
  NetState,
  Network,
  apply_net,
  create_net_state,
  make_adam,
  output_update,
  prefix,
  require_data,
  variables_of,
  warm_start,
)
from gcjax.objectives import mi as mi_lib
from gcjax.recipes import adversarial as adv_lib
from gcjax.recipes import distill as distill_lib
from gcjax.recipes import nets as nets_lib


@flax.struct.dataclass
class State:
  step: jax.Array
  teachers: tuple          # NetState per teacher (wide first)
  disc: NetState
  student: NetState
  adapt: NetState          # 1x1 conv -> BN -> ReLU feature adapters
  mi: object               # the MI add-on's state pytree


class Nets(NamedTuple):
  teachers: tuple
  disc: object
  student: object
  adapt: object


class Txs(NamedTuple):
  teachers: tuple
  disc: optax.GradientTransformation
  student: optax.GradientTransformation
  adapt: optax.GradientTransformation


class LossWeights(NamedTuple):
  adversarial: str
  lambda_l1: float
  student: distill_lib.StudentWeights


def _train_fwd(module, params, batch_stats, src, key):
  return apply_net(module, params, batch_stats, src, train=True, key=key)


def create_state(key, shapes, *, nets: Nets, txs: Txs, mi,
                 inits=(None, None)) -> State:
  keys = jax.random.split(key, len(nets.teachers) + 5)
  src = jnp.zeros((1, *shapes['src']), jnp.float32)
  tgt = jnp.zeros((1, *shapes['tgt']), jnp.float32)
  teachers = [
      create_net_state(n, tx, {'params': k, 'dropout': k}, src)
      for n, tx, k in zip(nets.teachers, txs.teachers, keys)]
  teachers[0] = warm_start(teachers[0], txs.teachers[0], inits[0])
  teachers = tuple(teachers)
  disc = create_net_state(nets.disc, txs.disc, keys[-5],
                          jnp.concatenate([src, tgt], -1))
  student = warm_start(
      create_net_state(nets.student, txs.student,
                       {'params': keys[-4], 'dropout': keys[-4]}, src),
      txs.student, inits[1])
  _, s_feats = nets.student.apply(
      {'params': student.params, 'batch_stats': student.batch_stats}, src)
  adapt = create_net_state(
      nets.adapt, txs.adapt, keys[-3],
      tuple(s_feats[name] for name in nets.adapt.layers))
  return State(step=jnp.zeros((), jnp.int32), teachers=teachers, disc=disc,
               student=student, adapt=adapt, mi=mi.init(keys[-2]))


def train_step(state: State, batch, key, frozen, *, nets: Nets, txs: Txs,
               w: LossWeights, mi, positive: str):
  key = jax.random.fold_in(key, state.step)
  t_keys = jax.random.split(jax.random.fold_in(key, 0), len(nets.teachers))
  src, tgt = batch['src'], batch['tgt']
  metrics = {}

  # 1. Teachers forward (train mode), D update on all teacher outputs.
  t_out, t_vjps, t_bs, t_feats = [], [], [], []
  for net, module, k in zip(state.teachers, nets.teachers, t_keys):
    def fwd(params, net=net, module=module, k=k):
      (img, feats), bs = apply_net(module, params, net.batch_stats, src,
                                   train=True, key=k)
      return img, (bs, feats)
    img, vjp, (bs, feats) = jax.vjp(fwd, net.params, has_aux=True)
    t_out.append(img)
    t_vjps.append(vjp)
    t_bs.append(bs)
    t_feats.append(feats)
  d_apply = adv_lib.conditional(adv_lib.train_apply(nets.disc), src)
  disc, m_d = adv_lib.d_update(state.disc, d_apply, txs.disc, tgt, t_out,
                               kind=w.adversarial)
  metrics.update(prefix('d', m_d))

  # 2. Teacher updates: GAN + lambda_l1 * L1, pulled back through the VJPs.
  teachers = []
  for i, (net, img, vjp, bs) in enumerate(
      zip(state.teachers, t_out, t_vjps, t_bs)):
    def out_loss(x):
      adv = adv_lib.g_adv_loss(d_apply, disc, x, w.adversarial)
      l1 = jnp.mean(jnp.abs(x - tgt))
      return adv + w.lambda_l1 * l1, {'adv': adv, 'l1': l1}
    new_t, m_t = output_update(net, txs.teachers[i], vjp, img, out_loss,
                               batch_stats=bs)
    metrics.update(prefix(f't{i}', m_t))
    teachers.append(new_t)

  # 3-4. MI critic update, then the student from the teachers only.
  t_pos = tgt if positive == 'target' else t_out[0]
  student, adapt, mi_state, m_s = distill_lib.student_update(
      state.student, state.adapt, state.mi, src, t_out, t_feats[0], t_pos,
      jax.random.fold_in(key, 1), frozen,
      student_fwd=partial(_train_fwd, nets.student), adapt_module=nets.adapt,
      tx_student=txs.student, tx_adapt=txs.adapt, w=w.student, mi=mi,
      tv_reduction='sum')   # OMGD sums TV over the batch (weight 1e-5)
  metrics.update(m_s)
  new = state.replace(step=state.step + 1, teachers=tuple(teachers),
                      disc=disc, student=student, adapt=adapt, mi=mi_state)
  return new, metrics


def _fwd(state, batch, frozen, *, module, which):
  del frozen
  net = which(state)
  (img, _), _ = apply_net(module, net.params, net.batch_stats,
                          batch['src'], train=False)
  return img


def make(config, sample_batch) -> Method:
  """Builds omgd/pix2pix from config.teacher/teacher_deep/student/disc/loss/mi."""
  require_data(sample_batch, 'omgd (pix2pix)')
  shapes = {k: tuple(v.shape[1:]) for k, v in sample_batch.items()}
  out_ch = shapes['tgt'][-1]
  teachers = [nets_lib.unet_generator(config.teacher, out_ch)]
  if config.teacher_deep.enabled:
    teachers.append(nets_lib.unet_generator(config.teacher_deep, out_ch))
  student = nets_lib.unet_generator(config.student, out_ch)
  src = jnp.zeros((1, *shapes['src']), jnp.float32)
  inits = (teachers_lib.load_like(config.teacher.init, teachers[0], src,
                                  'teacher.init'),
           teachers_lib.load_like(config.student.init, student, src,
                                  'student.init'))
  layers = tuple(config.loss.feature_layers)
  # Teacher feature widths at the distilled layers fix the adapter outputs.
  t_feats = jax.eval_shape(
      lambda x: teachers[0].init_with_output(
          {'params': jax.random.key(0), 'dropout': jax.random.key(0)}, x)[0][1],
      jax.ShapeDtypeStruct((1, *shapes['src']), jnp.float32))
  missing = [n for n in layers if n not in t_feats]
  if missing:
    raise errors.UserError(
        f'config.loss.feature_layers: {missing} are not U-Net feature maps; '
        f'available: {sorted(t_feats)}')
  adapt = distill_lib.Adapters(
      out_channels=tuple(t_feats[n].shape[-1] for n in layers), layers=layers)
  nets = Nets(teachers=tuple(teachers),
              disc=nets_lib.patch_discriminator(config.disc), student=student,
              adapt=adapt)
  o, n = config.optim, config.total_steps
  txs = Txs(teachers=tuple(make_adam(**o.g, total_steps=n) for _ in teachers),
            disc=make_adam(**o.d, total_steps=n),
            student=make_adam(**o.s, total_steps=n),
            adapt=make_adam(**o.s, total_steps=n))
  mi = mi_lib.make_mi_from_config(config.mi, t_shape=shapes['tgt'],
                                  s_shape=shapes['tgt'],
                                  total_steps=n)
  lc = config.loss
  w = LossWeights(
      adversarial=lc.adversarial, lambda_l1=lc.lambda_l1,
      student=distill_lib.StudentWeights(
          ssim=lc.ssim, style=lc.style, perceptual=lc.perceptual, tv=lc.tv,
          feature=lc.feature, l1=lc.l1, feature_layers=layers,
          style_layers=tuple(lc.style_layers)))
  frozen = None
  if lc.style > 0 or lc.perceptual > 0:
    from gcjax import metric_weights
    frozen = {'vgg': metric_weights.load_vgg16()}

  names = ('teacher', 'teacher_deep')[:len(teachers)]
  predict = {name: partial(_fwd, module=t, which=lambda s, i=i: s.teachers[i])
             for i, (name, t) in enumerate(zip(names, teachers))}
  predict = {'teacher': predict['teacher'],
             'student': partial(_fwd, module=student,
                                which=lambda s: s.student),
             **{k: v for k, v in predict.items() if k != 'teacher'}}
  pair = (*shapes['src'][:-1], shapes['src'][-1] + out_ch)

  def finalize(state, frozen):
    del frozen
    nets_out = {name: Network(t, variables_of(state.teachers[i]),
                              shapes['src'], section=section)
                for i, (name, t, section) in enumerate(
                    zip(names, teachers, ('teacher', 'teacher_deep')))}
    nets_out['student'] = Network(student, variables_of(state.student),
                                  shapes['src'], section='student')
    nets_out['disc'] = Network(nets.disc, variables_of(state.disc), pair,
                               section='disc')
    if mi.critic is not None:   # VEM: the energy net, for evaluation probes
      module, v = mi.critic(state.mi)
      nets_out['ebm'] = Network(module, v, (*shapes['tgt'][:-1], 2 * out_ch),
                                section='mi')
    return nets_out

  return Method(
      init=partial(create_state, shapes=shapes, nets=nets, txs=txs, mi=mi,
                   inits=inits),
      train_step=partial(train_step, nets=nets, txs=txs, w=w, mi=mi,
                         positive=config.mi.positive),
      predict=predict, finalize=finalize,
      export=('student', *names, 'disc'),
      sample_rows=('src', *predict, 'tgt'), frozen=frozen)

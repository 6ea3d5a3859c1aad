"""Method ``omgd``: online multi-granularity distillation (+ the MI add-on).

Each step (OMGD, Ren et al. 2021, as VEM builds on it):
1. the teacher(s) run once in train mode; the shared PatchGAN is updated on
   (src, tgt) vs (src, teacher output);
2. each teacher is updated with the GAN loss against the updated D plus
   ``lambda_l1`` * L1 to the target (gradients through the saved VJPs);
3. the MI critic (``config.mi.kind``: none | vem | vid | crd) is updated on
   (t+, stop_gradient(student output)); for VEM this runs the Langevin chain;
4. the student is updated from the teachers only (it never sees D;
   ``distill_common.student_update``, shared with the CycleGAN task):
   sum over teachers of ssim * (1 - SSIM) + style * Gram-L1(VGG16) +
   perceptual * L1(VGG16 relu2_2) + tv * TV, plus ``feature`` * MSE of
   channel means between adapted student maps and the wide teacher's maps,
   plus the MI student term (``gcjax.objectives.mi``).

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

from gcjax.methods import distill_common
from gcjax.methods import pix2pix_nets as p2p
from gcjax.methods.base import (
  CostModel,
  Method,
  NetState,
  apply_gradients,
  create_net_state,
  global_norm,
  make_adam,
  prefix,
)
from gcjax.objectives import mi as mi_lib


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
  student: distill_common.StudentWeights


def _train_fwd(module, params, batch_stats, src, key):
  return p2p.gen_apply(module, params, batch_stats, src, key, train=True)


def create_state(key, shapes, *, nets: Nets, txs: Txs, mi) -> State:
  keys = jax.random.split(key, len(nets.teachers) + 5)
  src = jnp.zeros((1, *shapes['src']), jnp.float32)
  tgt = jnp.zeros((1, *shapes['tgt']), jnp.float32)
  teachers = tuple(
      create_net_state(n, tx, {'params': k, 'dropout': k}, src)
      for n, tx, k in zip(nets.teachers, txs.teachers, keys))
  disc = create_net_state(nets.disc, txs.disc, keys[-5],
                          jnp.concatenate([src, tgt], -1))
  student = create_net_state(nets.student, txs.student,
                             {'params': keys[-4], 'dropout': keys[-4]}, src)
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
      (img, feats), bs = p2p.gen_apply(module, params, net.batch_stats, src,
                                       k, train=True)
      return img, (bs, feats)
    img, vjp, (bs, feats) = jax.vjp(fwd, net.params, has_aux=True)
    t_out.append(img)
    t_vjps.append(vjp)
    t_bs.append(bs)
    t_feats.append(feats)
  disc, m_d = p2p.disc_update(state.disc, nets.disc, txs.disc, src, tgt,
                              t_out, w.adversarial)
  metrics.update(prefix('d', m_d))

  # 2. Teacher updates: GAN + lambda_l1 * L1, pulled back through the VJPs.
  teachers = []
  for i, (net, img, vjp, bs) in enumerate(
      zip(state.teachers, t_out, t_vjps, t_bs)):
    def out_loss(x):
      adv = p2p.gen_adv_loss(nets.disc, disc, src, x, w.adversarial)
      l1 = jnp.mean(jnp.abs(x - tgt))
      return adv + w.lambda_l1 * l1, {'adv': adv, 'l1': l1}
    (loss, m_t), d_img = jax.value_and_grad(out_loss, has_aux=True)(img)
    grads, = vjp(d_img)
    m_t = {**m_t, 'loss': loss, 'grad_norm': global_norm(grads)}
    metrics.update(prefix(f't{i}', m_t))
    teachers.append(apply_gradients(net, grads, txs.teachers[i],
                                    batch_stats=bs))

  # 3-4. MI critic update, then the student from the teachers only.
  t_pos = tgt if positive == 'target' else t_out[0]
  student, adapt, mi_state, m_s = distill_common.student_update(
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
  (img, _), _ = p2p.gen_apply(module, net.params, net.batch_stats,
                              batch['src'], None, train=False)
  return img


def make(config, sample_batch) -> Method:
  """Builds ``omgd`` from config.teacher/teacher_deep/student/disc/loss/mi.

  ``config.omgd.task`` picks the recipe: ``'pix2pix'`` (paired, U-Nets; this
  module) or ``'cyclegan'`` (unpaired, ResNet teacher; ``omgd_cyclegan``).
  """
  if config.omgd.task == 'cyclegan':
    from gcjax.methods import omgd_cyclegan
    return omgd_cyclegan.make(config, sample_batch)
  if config.omgd.task != 'pix2pix':
    raise ValueError(f"config.omgd.task={config.omgd.task!r}; expected "
                     "'pix2pix' or 'cyclegan'")
  shapes = {k: tuple(v.shape[1:]) for k, v in sample_batch.items()}
  out_ch = shapes['tgt'][-1]
  teachers = [p2p.make_unet(config.teacher, out_ch)]
  if config.teacher_deep.enabled:
    teachers.append(p2p.make_unet(config.teacher_deep, out_ch))
  student = p2p.make_unet(config.student, out_ch)
  layers = tuple(config.loss.feature_layers)
  # Teacher feature widths at the distilled layers fix the adapter outputs.
  t_feats = jax.eval_shape(
      lambda x: teachers[0].init_with_output(
          {'params': jax.random.key(0), 'dropout': jax.random.key(0)}, x)[0][1],
      jax.ShapeDtypeStruct((1, *shapes['src']), jnp.float32))
  missing = [n for n in layers if n not in t_feats]
  if missing:
    raise ValueError(f'config.loss.feature_layers: {missing} are not U-Net '
                     f'feature maps; available: {sorted(t_feats)}')
  adapt = distill_common.Adapters(
      out_channels=tuple(t_feats[n].shape[-1] for n in layers), layers=layers)
  nets = Nets(teachers=tuple(teachers),
              disc=p2p.make_patchgan(config.disc), student=student,
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
      student=distill_common.StudentWeights(
          ssim=lc.ssim, style=lc.style, perceptual=lc.perceptual, tv=lc.tv,
          feature=lc.feature, l1=lc.l1, feature_layers=layers,
          style_layers=tuple(lc.style_layers)))
  frozen = None
  if lc.style > 0 or lc.perceptual > 0:
    from gcjax import metric_weights
    frozen = {'vgg': metric_weights.load_vgg16()}

  predict = {'teacher': partial(_fwd, module=teachers[0],
                                which=lambda s: s.teachers[0]),
             'student': partial(_fwd, module=student,
                                which=lambda s: s.student)}
  if len(teachers) > 1:
    predict['teacher_deep'] = partial(_fwd, module=teachers[1],
                                      which=lambda s: s.teachers[1])

  def cost(module, which):
    return CostModel(
        fwd=lambda v, x: module.apply(v, x, train=False)[0],
        variables=lambda s, f: {'params': which(s).params,
                                'batch_stats': which(s).batch_stats},
        input_shape=shapes['src'])

  costs = {'teacher': cost(teachers[0], lambda s: s.teachers[0]),
           'student': cost(student, lambda s: s.student)}
  return Method(
      init=partial(create_state, shapes=shapes, nets=nets, txs=txs, mi=mi),
      train_step=partial(train_step, nets=nets, txs=txs, w=w, mi=mi,
                         positive=config.mi.positive),
      predict=predict,
      sample_rows=('src', *predict, 'tgt'),
      cost_models=costs, target_key='tgt', reference='teacher',
      frozen=frozen)

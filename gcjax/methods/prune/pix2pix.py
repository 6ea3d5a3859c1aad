"""``prune`` task ``pix2pix``: prune a Pix2Pix U-Net generator.

The teacher U-Net and its conditional PatchGAN come from a ``gan``
(pix2pix flavour) run: ``teacher.init='run:<workdir>'``. The pruned student
starts from the teacher (or ``student.init``). The discriminator judges
``concat(src, image)`` (``recipes.adversarial.conditional``); the task loss
is ``loss.lambda_l1`` * L1 to the target; distillation compares the
student with the teacher's eval-mode output on the same source.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from gcjax import errors, teachers
from gcjax.methods.base import (
  Method,
  Network,
  apply_net,
  prefix,
  require_data,
  variables_of,
)
from gcjax.methods.prune import common
from gcjax.models import patchgan, unet
from gcjax.recipes import adversarial as adv_lib
from gcjax.recipes import nets as nets_lib


def train_step(state: common.State, batch, key, frozen, *, nets, txs,
               pruners, recipe: common.Recipe, adv_kind: str, mi,
               mi_positive: str):
  """Mask update (on schedule), D update (if it trains), MI critic, G."""
  key = jax.random.fold_in(key, state.step)
  drop_key, mi_key = jax.random.split(key)
  g_pruner, d_pruner = pruners
  student, masks = common.prune_step(g_pruner, state.student, state.masks,
                                     state.step)
  disc, d_masks = common.prune_step(d_pruner, state.disc, state.disc_masks,
                                    state.step)
  src, tgt = batch['src'], batch['tgt']
  t_img = common.teacher_img(nets.teacher, frozen, src)

  def s_fwd(params):
    (img, _), bs = apply_net(nets.student, params, student.batch_stats, src,
                             train=True, key=drop_key)
    return img, bs

  s_img, s_vjp, s_bs = jax.vjp(s_fwd, student.params, has_aux=True)
  d_apply = adv_lib.conditional(adv_lib.train_apply(nets.disc), src)
  metrics = {}
  if recipe.train_disc:
    disc, m_d = adv_lib.d_update(disc, d_apply, txs.disc, tgt, [s_img],
                                 kind=adv_kind)
    disc = common.remask(disc, d_masks)
    metrics.update(prefix('d', m_d))
  elif recipe.adv > 0:
    disc = frozen['disc_state']
  t_pos = tgt if mi_positive == 'target' else t_img
  mi_state, mi_aux = state.mi, None
  if mi is not None:
    mi_state, mi_aux, m_mi = mi.update(state.mi, t_pos,
                                       jax.lax.stop_gradient(s_img), mi_key)
    metrics.update(m_mi)

  def out_loss(img):
    m = {}
    loss = jnp.zeros(())
    if recipe.adv > 0:
      m['adv'] = adv_lib.g_adv_loss(d_apply, disc, img, adv_kind)
      loss = loss + recipe.adv * m['adv']
    if recipe.task > 0:
      m['l1'] = jnp.mean(jnp.abs(img - tgt))
      loss = loss + recipe.task * m['l1']
    loss = common.add_distill(loss, m, img, t_img, t_pos, recipe=recipe,
                              mi=mi, mi_state=mi_state, mi_aux=mi_aux)
    return loss, m

  return common.finish_step(
      state, student, masks, disc, d_masks, mi_state, metrics,
      tx=txs.student, vjp=s_vjp, img=s_img, out_loss=out_loss,
      batch_stats=s_bs, pruners=pruners, recipe=recipe)


def make(config, sample_batch) -> Method:
  """Builds ``prune`` (pix2pix) from config.teacher/student/prune/loss/
  optim (+ mi)."""
  require_data(sample_batch, 'prune (pix2pix)')
  src_shape = tuple(sample_batch['src'].shape[1:])
  out_ch = sample_batch['tgt'].shape[-1]
  pair_shape = (*src_shape[:-1], src_shape[-1] + out_ch)
  x0 = jnp.zeros((1, *src_shape))

  def random_g(key):
    m = nets_lib.unet_generator(config.teacher, out_ch)
    return m, jax.jit(m.init)({'params': key, 'dropout': key}, x0)

  def random_d(key):
    m = nets_lib.patch_discriminator(config.disc)
    return m, jax.jit(m.init)(key, jnp.zeros((1, *pair_shape)))

  teacher, t_vars, d_mod, d_vars = common.load_teacher(
      config.teacher, unet.UNetGenerator, random_g, random_d,
      config.seed + 1)
  if not isinstance(d_mod, patchgan.PatchDiscriminator):
    raise errors.UserError(
        f'the teacher discriminator ({common.disc_spec(config.teacher)!r}) '
        f'is a {type(d_mod).__name__}, not a PatchDiscriminator')
  recipe = common.make_recipe(config.prune, config.loss.lambda_l1)
  if recipe.scratch:
    raise errors.UserError("prune.recipe='scratch' is built for the dcgan "
                           'task only')
  n = config.total_steps
  loaded = teachers.load(config.student.init)
  s_mod, s_vars = loaded if loaded is not None else (teacher, t_vars)
  g_pruner = common.make_pruner(config.prune, s_mod, s_vars, n)
  d_pruner = (common.make_pruner(config.prune, d_mod, d_vars, n,
                                 kind='fine', layers=())
              if recipe.prune_disc else None)
  nets = common.Nets(teacher=teacher, student=s_mod, disc=d_mod)
  txs = common.make_txs(config.optim, n, recipe.train_disc)
  img_shape = (*src_shape[:-1], out_ch)
  mi = None
  if config.mi.kind != 'none' and recipe.distill > 0:
    from gcjax.objectives import mi as mi_lib
    mi = mi_lib.make_mi_from_config(config.mi, t_shape=img_shape,
                                    s_shape=img_shape, total_steps=n)

  def init(key):
    student, masks = common.init_masks(
        g_pruner, common.net_from(s_vars, txs.student), txs.student)
    disc, d_masks = None, None
    if recipe.train_disc:
      disc, d_masks = common.init_masks(
          d_pruner, common.net_from(d_vars, txs.disc), txs.disc)
    return common.State(step=jnp.zeros((), jnp.int32), student=student,
                        masks=masks, disc=disc, disc_masks=d_masks,
                        mi=mi.init(key) if mi is not None else None)

  frozen = {'teacher': t_vars}
  if recipe.adv > 0 and not recipe.train_disc:
    frozen['disc_state'] = common.frozen_net(d_vars)

  def finalize(state, frozen):
    out = {'teacher': Network(teacher, frozen['teacher'], src_shape,
                              section='teacher')}
    out['student'] = common.student_network(s_mod, state, g_pruner,
                                            src_shape)
    if recipe.train_disc:
      out['disc'] = Network(d_mod, variables_of(state.disc), pair_shape,
                            section='disc')
    return out

  predict = common.predicts(s_mod, teacher, 'src')

  return Method(
      init=init,
      train_step=partial(train_step, nets=nets, txs=txs,
                         pruners=(g_pruner, d_pruner), recipe=recipe,
                         adv_kind=config.loss.adversarial, mi=mi,
                         mi_positive=config.mi.positive),
      predict=predict,
      finalize=finalize,
      export=('student', 'disc') if recipe.train_disc else ('student',),
      sample_rows=('src', 'teacher', 'student', 'tgt'), frozen=frozen)

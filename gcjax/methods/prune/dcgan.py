"""``prune`` task ``dcgan``: prune an unconditional DCGAN generator.

The teacher generator and discriminator come from a ``gan`` (dcgan flavour)
run: ``teacher.init='run:<workdir>'`` (its ``generator``; the ``disc`` of
the same run unless ``teacher.disc_init`` names another). The pruned
student starts from the teacher's weights (or ``student.init``, e.g. a
``kd`` student) and sees fresh latents every step; distillation compares
it with the teacher's image of the same z. When D trains, its real images
are the data (``batch['img']``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from gcjax import errors, materialize, pruning, teachers
from gcjax.methods.base import (
  Method,
  Network,
  apply_net,
  create_net_state,
  prefix,
  variables_of,
)
from gcjax.methods.gan import dcgan as dc
from gcjax.methods.prune import common
from gcjax.models import dcgan
from gcjax.recipes import adversarial as adv_lib


def _frozen_logits(module, disc, s_img, t_img) -> dict[str, jax.Array]:
  """Diagnostics of a frozen teacher D (train mode, as in the G loss): its
  mean logit on the student's and on the teacher's images of the same z."""
  apply_fn = adv_lib.train_apply(module)
  out = {}
  for name, img in (('student', s_img), ('teacher', t_img)):
    (logit, *_), _ = apply_fn(disc.params, disc.batch_stats,
                              jax.lax.stop_gradient(img))
    out[f'dfrozen/{name}'] = jnp.mean(logit)
  return out


def train_step(state: common.State, batch, key, frozen, *, nets, txs, pruners,
               recipe: common.Recipe, adv: adv_lib.Adversarial, mi,
               rows: int):
  """Mask update (on schedule), D update (if it trains), MI critic, G.

  Returns (state, scalar metrics incl. ``prune/sparsity``, per-layer
  ``prune/<layer>`` and ``prune/target``).
  """
  key = jax.random.fold_in(key, state.step)
  z_key, gp_key, mi_key = jax.random.split(key, 3)
  g_pruner, d_pruner = pruners
  student, masks = common.prune_step(g_pruner, state.student, state.masks,
                                     state.step)
  disc, d_masks = common.prune_step(d_pruner, state.disc, state.disc_masks,
                                    state.step)
  real = batch.get(dc.IMAGE_KEY)
  z = jax.random.normal(z_key, (rows, nets.student.nz))
  t_img = common.teacher_img(nets.teacher, frozen, z)

  def s_fwd(params):
    (img, _), bs = apply_net(nets.student, params, student.batch_stats, z,
                             train=True)
    return img, bs

  s_img, s_vjp, s_bs = jax.vjp(s_fwd, student.params, has_aux=True)
  metrics = {}
  if recipe.train_disc:
    disc, m_d = dc.critic_update(disc, nets.disc, txs.disc, real, s_img,
                                 gp_key, adv)
    disc = common.remask(disc, d_masks)
    metrics.update(prefix('d', m_d))
  elif recipe.adv > 0:
    disc = frozen['disc_state']
    metrics.update(_frozen_logits(nets.disc, disc, s_img, t_img))
  mi_state, mi_aux = state.mi, None
  if mi is not None:
    mi_state, mi_aux, m_mi = mi.update(state.mi, t_img,
                                       jax.lax.stop_gradient(s_img), mi_key)
    metrics.update(m_mi)

  def out_loss(img):
    m = {}
    loss = jnp.zeros(())
    if recipe.adv > 0:
      m['adv'] = dc.gen_adv_loss(nets.disc, disc, img, adv)
      loss = loss + recipe.adv * m['adv']
    loss = common.add_distill(loss, m, img, t_img, t_img, recipe=recipe,
                              mi=mi, mi_state=mi_state, mi_aux=mi_aux)
    return loss, m

  return common.finish_step(
      state, student, masks, disc, d_masks, mi_state, metrics,
      tx=txs.student, vjp=s_vjp, img=s_img, out_loss=out_loss,
      batch_stats=s_bs, pruners=pruners, recipe=recipe)


def _random_g(section):
  def build(key):
    m = dcgan.DCGANGenerator(d=section.d, nz=section.nz,
                             out_ch=section.channels,
                             resolution=section.resolution, norm='batch')
    return m, jax.jit(m.init)(key, jnp.zeros((1, section.nz)))
  return build


def _random_d(section, resolution):
  def build(key):
    m = dcgan.DCGANDiscriminator(d=section.d, resolution=resolution,
                                 norm=section.norm)
    return m, jax.jit(m.init)(key, jnp.zeros((1, resolution, resolution,
                                              1)))
  return build


def make(config, sample_batch) -> Method:
  """Builds ``prune`` (dcgan) from config.teacher/student/prune/loss/optim
  (+ mi)."""
  t = config.teacher
  teacher, t_vars, d_mod, d_vars = common.load_teacher(
      t, dcgan.DCGANGenerator, _random_g(t), _random_d(config.disc,
                                                        t.resolution),
      config.seed + 1)
  if not isinstance(d_mod, dcgan.DCGANDiscriminator):
    raise errors.UserError(f'the teacher discriminator '
                           f'({common.disc_spec(t)!r}) is a '
                           f'{type(d_mod).__name__}, not a '
                           'DCGANDiscriminator')
  shape = (teacher.resolution, teacher.resolution, teacher.out_ch)
  recipe = common.make_recipe(config.prune)
  got = (sample_batch or {}).get(dc.IMAGE_KEY)
  if recipe.train_disc and (got is None or tuple(got.shape[1:]) != shape):
    raise errors.UserError(
        f'prune.recipe={recipe.name!r} trains D on real images of shape '
        f'{shape} (the teacher output): set config.data (got '
        f'{None if got is None else tuple(got.shape[1:])})')
  lc = config.loss
  adv = adv_lib.Adversarial(kind=lc.adversarial, gp_weight=lc.gp_weight,
                            n_critic=1)
  adv_lib.check(adv, d_mod.norm, dc.ADVERSARIAL)
  n = config.total_steps
  z0 = jnp.zeros((1, teacher.nz))
  loaded = teachers.load(config.student.init)
  s_mod, s_vars = loaded if loaded is not None else (teacher, t_vars)
  if recipe.scratch:
    layers = pruning.check_layers(s_vars['params'], config.prune.layers)
    s_mod = materialize.scaled(s_mod, 1.0 - config.prune.sparsity, layers)
    s_vars = None
  g_pruner = (None if recipe.scratch else
              common.make_pruner(config.prune, s_mod, s_vars, n))
  d_pruner = (common.make_pruner(config.prune, d_mod, d_vars, n,
                                 kind='fine', layers=())
              if recipe.prune_disc else None)
  nets = common.Nets(teacher=teacher, student=s_mod, disc=d_mod)
  txs = common.make_txs(config.optim, n, recipe.train_disc)
  mi = None
  if config.mi.kind != 'none' and recipe.distill > 0:
    from gcjax.objectives import mi as mi_lib
    mi = mi_lib.make_mi_from_config(config.mi, t_shape=shape, s_shape=shape,
                                    total_steps=n)

  def init(key):
    s_key, d_key, mi_key = jax.random.split(key, 3)
    student = (create_net_state(s_mod, txs.student, s_key, z0)
               if s_vars is None else common.net_from(s_vars, txs.student))
    student, masks = common.init_masks(g_pruner, student, txs.student)
    disc, d_masks = None, None
    if recipe.train_disc:
      disc = (create_net_state(d_mod, txs.disc, d_key,
                               jnp.zeros((1, *shape)))
              if recipe.scratch else common.net_from(d_vars, txs.disc))
      disc, d_masks = common.init_masks(d_pruner, disc, txs.disc)
    return common.State(step=jnp.zeros((), jnp.int32), student=student,
                        masks=masks, disc=disc, disc_masks=d_masks,
                        mi=mi.init(mi_key) if mi is not None else None)

  frozen = {'teacher': t_vars}
  if recipe.adv > 0 and not recipe.train_disc:
    frozen['disc_state'] = common.frozen_net(d_vars)

  def finalize(state, frozen):
    out = {'teacher': Network(teacher, frozen['teacher'], (teacher.nz,),
                              section='teacher')}
    out['student'] = common.student_network(s_mod, state, g_pruner,
                                            (teacher.nz,))
    if recipe.train_disc:
      out['disc'] = Network(d_mod, variables_of(state.disc), shape,
                            section='disc')
    return out

  predict = common.predicts(s_mod, teacher, 'z')

  return Method(
      init=init,
      train_step=partial(train_step, nets=nets, txs=txs,
                         pruners=(g_pruner, d_pruner), recipe=recipe,
                         adv=adv, mi=mi, rows=config.data.batch_size),
      predict=predict,
      finalize=finalize,
      export=('student', 'disc') if recipe.train_disc else ('student',),
      sample_rows=('teacher', 'student'),
      eval_inputs=dc.latent_inputs(teacher.nz),
      needs_data=recipe.train_disc, frozen=frozen)


"""KDIT I2I student (StarGANv2-like): stage 1 distillation, stage 2 class
translation.

Stage 1 (data-free, Eq. 5), per step on online style-mixed triplets
(x1, x2, y) from the frozen teacher (``gcjax.recipes.triplets``):

  D_S: softplus(-D(y)) + softplus(D(y_hat))            (Eq. 4, y real)
  student: lambda_adv softplus(-D(y_hat)) + lambda_kdl (L_e + L_r + L_g)
    L_e = sum gamma |D_T(x1)_l - H(E_S(x1)_l)|          (Eq. 1)
    L_r = sum tau |D_T(x2)_l - H(E_R(x2)_l)|            (Eq. 2)
    L_g = sum alpha_l |G_T(Phi)_l - H(G_S(.)_l)| + beta |y - y_hat| (Eq. 3)

with y_hat = G_S(E_S(x1), E_R(x2)), H the 1x1 hint layers (trained with
the student, dropped after stage 1), layers paired by spatial side (D_T's
block outputs with the encoders', G_T's ``res<r>`` with G_S's ``gen<r>``).
``kdit.guide='latent'``: E_R is replaced by the mapping net on the teacher's
own z2 (StarGANv2's latent-guided synthesis); L_r drops out. D has a logit
per class; stage 1 has no classes, so each row trains a random head (and
a random mapping head), which is how the paper's single distilled mapping
network is duplicated per class.

Stage 2 (class-labelled images, reference-guided by default): the
reference is the next row of the batch and its class the target,
y_hat = G_S(E_S(x), s) with s = E_R(ref) (``latent``: the mapping head of
the target class on fresh z); StarGANv2's losses without the diversity
term:

  D_S: adversarial on (x, its class) vs (y_hat, target class) + r1 R1
  student: adversarial + lambda_sty |E_R(y_hat) - s|
           + lambda_cyc |G_S(E_S(y_hat), E_R(x)) - x|
"""

from __future__ import annotations

from functools import partial

import flax
import jax
import jax.numpy as jnp
import numpy as np

from gcjax import errors, teachers
from gcjax.methods.base import (
  Method,
  NetState,
  Network,
  create_net_state,
  warm_start,
)
from gcjax.methods.kdit import common
from gcjax.models import kdit as models
from gcjax.objectives import kdit as losses


@flax.struct.dataclass
class State:
  step: jax.Array
  student: NetState
  mapping: NetState
  disc: NetState
  hints: NetState | None = None


class Nets(flax.struct.PyTreeNode):
  student: models.I2IStudent = flax.struct.field(pytree_node=False)
  mapping: models.MappingNet = flax.struct.field(pytree_node=False)
  disc: models.ClassDiscriminator = flax.struct.field(pytree_node=False)
  hints: models.Hints | None = flax.struct.field(pytree_node=False,
                                                 default=None)


def make_nets(config, resolution: int, channels: int) -> Nets:
  s = config.student
  return Nets(
      student=models.I2IStudent(resolution=resolution, out_ch=channels,
                                ch=s.ch, style_dim=s.style_dim),
      mapping=models.MappingNet(z_dim=s.z_dim, style_dim=s.style_dim,
                                hidden=s.mapping_hidden,
                                num_classes=s.num_classes),
      disc=models.ClassDiscriminator(resolution=resolution,
                                     ch=config.disc.ch,
                                     num_classes=s.num_classes))


def _samples(nets: Nets):
  r, c = nets.student.resolution, nets.student.out_ch
  return (jnp.zeros((1, r, r, 2 * c)), jnp.zeros((1, nets.mapping.z_dim)),
          jnp.zeros((1, r, r, c)))


def create_state(key, *, nets: Nets, tx_g, tx_d, hint_feats=None,
                 init_vars=None) -> State:
  s_key, m_key, d_key, h_key = jax.random.split(key, 4)
  x2, z, x = _samples(nets)
  student = create_net_state(nets.student, tx_g, s_key, x2)
  mapping = create_net_state(nets.mapping, tx_g, m_key, z)
  disc = create_net_state(nets.disc, tx_d, d_key, x)
  if init_vars is not None:
    student = warm_start(student, tx_g, init_vars['student'])
    mapping = warm_start(mapping, tx_g, init_vars['mapping'])
    disc = warm_start(disc, tx_d, init_vars['disc'])
  hints = None
  if nets.hints is not None:
    params = nets.hints.init(h_key, hint_feats).get('params', {})
    hints = NetState(params=params, opt_state=tx_g.init(params))
  return State(step=jnp.zeros((), jnp.int32), student=student,
               mapping=mapping, disc=disc, hints=hints)


def _apply(module, params, *args, method=None):
  return module.apply({'params': params}, *args, method=method)


def _style(nets: Nets, params, guide: str, ref, z, label):
  """s [B, style_dim]: E_R(ref), or the mapping head ``label`` of z."""
  if guide == 'reference':
    return _apply(nets.student, params['student'], ref, method='style')
  styles = _apply(nets.mapping, params['mapping'], z)[0]
  return jnp.take_along_axis(styles, label[:, None, None], 1)[:, 0], {}


def _translate(nets: Nets, params, guide: str, src, ref, z, label):
  content, f_c = _apply(nets.student, params['student'], src,
                        method='content')
  s, f_r = _style(nets, params, guide, ref, z, label)
  img, f_g = _apply(nets.student, params['student'], content, s,
                    method='decode')
  return img, {**f_c, **f_r, **f_g}, s


def stage1_step(state: State, batch, key, frozen, *, nets: Nets, teacher,
                tx_g, tx_d, st: common.Settings, pairs, rows: int):
  del batch                                   # data-free: always {}
  tr, z2, label, _ = common.stage1_triplets(
      key, state.step, teacher, frozen, st, rows, nets.mapping.num_classes)
  nets_in = {'student': state.student, 'mapping': state.mapping,
             'hints': state.hints}

  def fwd(params):
    img, feats, _ = _translate(nets, params, st.guide, tr.x1, tr.x2, z2,
                               label)
    return img, _apply(nets.hints, params['hints'], feats)

  def disc_update(out):
    return common.d_update(state.disc, nets.disc, tx_d, tr.y, label, out[0],
                           label)

  def out_loss(out, disc):
    img, f = out
    l_e = losses.feature_l1(tr.d_x1, f, pairs['e'])
    l_r = losses.feature_l1(tr.d_x2, f, pairs['r'])
    l_gf = losses.feature_l1(tr.g_y, f, pairs['g'])
    l_gy = losses.output_l1(tr.y, img, st.beta)
    l_adv = common.g_adv(disc, nets.disc, img, label)
    kdl = l_e + l_r + l_gf + l_gy
    loss = st.lambda_adv * l_adv + st.lambda_kdl * kdl
    return loss, {'adv': l_adv, 'kdl_e': l_e, 'kdl_r': l_r,
                  'kdl_g_feat': l_gf, 'kdl_g_img': l_gy, 'kdl': kdl}

  return common.update_step(state, nets_in, fwd, tx_g, disc_update,
                            out_loss)


def stage2_step(state: State, batch, key, frozen, *, nets: Nets, tx_g,
                tx_d, st: common.Settings):
  del frozen
  x, label, z = common.stage2_inputs(batch, key, state.step, nets.mapping.z_dim)
  ref, tgt = jnp.roll(x, 1, 0), jnp.roll(label, 1, 0)
  nets_in = {'student': state.student, 'mapping': state.mapping}

  def fwd(params):
    fake, _, s = _translate(nets, params, st.guide, x, ref, z, tgt)
    s_fake = _apply(nets.student, params['student'], fake,
                    method='style')[0]
    s_src = _apply(nets.student, params['student'], x, method='style')[0]
    c_fake = _apply(nets.student, params['student'], fake,
                    method='content')[0]
    cyc = _apply(nets.student, params['student'], c_fake, s_src,
                 method='decode')[0]
    return fake, s, s_fake, cyc

  def disc_update(out):
    return common.d_update(state.disc, nets.disc, tx_d, x, label, out[0],
                           tgt, st.r1_weight)

  def out_loss(out, disc):
    fake, s, s_fake, cyc = out
    l_adv = common.g_adv(disc, nets.disc, fake, tgt)
    l_sty = losses.l1(jax.lax.stop_gradient(s), s_fake)
    l_cyc = losses.l1(x, cyc)
    loss = st.lambda_adv * l_adv + st.lambda_sty * l_sty + (
        st.lambda_cyc * l_cyc)
    return loss, {'adv': l_adv, 'sty': l_sty, 'cyc': l_cyc}

  return common.update_step(state, nets_in, fwd, tx_g, disc_update,
                            out_loss)


def _params(state):
  return {'student': state.student.params, 'mapping': state.mapping.params}


def _finalize_nets(state, nets: Nets):
  r, c = nets.student.resolution, nets.student.out_ch
  return {
      'student': Network(nets.student, {'params': state.student.params},
                         (r, r, 2 * c), section='student'),
      'mapping': Network(nets.mapping, {'params': state.mapping.params},
                         (nets.mapping.z_dim,), section='student'),
      'disc': Network(nets.disc, {'params': state.disc.params}, (r, r, c),
                      section='disc')}


def _make_stage1(config, st: common.Settings) -> Method:
  teacher, frozen = common.load_teacher(config)
  g = teacher.gen
  nets = make_nets(config, g.resolution, g.out_ch)
  if st.guide == 'latent' and nets.mapping.z_dim != g.z_dim:
    raise errors.UserError(
        f'config.student.z_dim={nets.mapping.z_dim}: the latent-guided '
        f'student maps the teacher\'s z2, set it to {g.z_dim}')
  g_feats, d_feats = common.teacher_shapes(teacher, frozen)
  x2, _, _ = _samples(nets)
  s_feats = jax.eval_shape(lambda x: nets.student.init_with_output(
      jax.random.key(0), x)[0][1], x2)
  pairs = {
      'e': common.pair_by_side(d_feats, s_feats, 'block', 'content',
                               st.gamma),
      'r': common.pair_by_side(d_feats, s_feats, 'block', 'ref', st.tau)
      if st.guide == 'reference' else [],
      'g': common.pair_by_side(g_feats, s_feats, 'res', 'gen',
                               common.alpha_of(st.alpha))}
  hint_feats = {s: jnp.zeros(s_feats[s].shape) for p in pairs.values()
                for _, s, _ in p}
  all_pairs = [p for v in pairs.values() for p in v]
  nets = nets.replace(hints=models.Hints(
      common.hint_widths({**g_feats, **d_feats}, all_pairs)))
  tx_g, tx_d = common.optimizers(config)
  trip, image_of = common.triplet_views(teacher, st.cutoff)

  def predict_student(state, batch, frozen):
    tr = trip(batch, frozen)
    img = _translate(nets, _params(state), st.guide, tr.x1, tr.x2,
                     batch['z2'], batch['cls'])[0]
    return common.clip(img)

  def eval_inputs(batch, key):
    batch, key = common.triplet_latents(batch, key, g.z_dim)
    cls = jax.random.randint(key, (len(batch['z1']),), 0,
                             nets.mapping.num_classes)
    return {**batch, 'cls': np.asarray(cls, np.int32)}

  def finalize(state, frozen):
    return {**_finalize_nets(state, nets),
            'teacher': Network(g, frozen['g'], (g.z_dim,),
                               section='teacher')}

  return Method(
      init=partial(create_state, nets=nets, tx_g=tx_g, tx_d=tx_d,
                   hint_feats=hint_feats),
      train_step=partial(stage1_step, nets=nets, teacher=teacher, tx_g=tx_g,
                         tx_d=tx_d, st=st, pairs=pairs,
                         rows=config.data.batch_size),
      predict={'x1': image_of('x1'), 'x2': image_of('x2'),
               'teacher': image_of('y'), 'student': predict_student},
      finalize=finalize, export=('student', 'mapping', 'disc'),
      sample_rows=('x1', 'x2', 'teacher', 'student'),
      eval_inputs=eval_inputs, needs_data=False, frozen=frozen)


def load_init(spec: str, nets: Nets):
  """Stage 1's student, mapping net and D for a warm start (or None)."""
  if not spec:
    return None
  x2, z, x = _samples(nets)
  return {
      'student': teachers.load_like(common.sibling(spec, 'student'),
                                    nets.student, x2, 'student.init'),
      'mapping': teachers.load_like(common.sibling(spec, 'mapping'),
                                    nets.mapping, z, 'student.init'),
      'disc': teachers.load_like(common.sibling(spec, 'disc'), nets.disc, x,
                                 'student.init')}


def stage2_eval_inputs(z_dim: int):
  """Adds a reference (a random row), its class ``tgt_label``, a second
  reference of that class (``ref2``) and latents ``z``, ``z2``."""
  def eval_inputs(batch, key):
    rows = len(batch['img'])
    seed = np.asarray(jax.random.key_data(key)).ravel()
    rng = np.random.default_rng(seed.astype(np.uint32))
    perm = rng.permutation(rows)
    other = common.partner_rows(batch['label'], perm, rng)
    return {**batch, 'ref': batch['img'][perm], 'ref2': batch['img'][other],
            'tgt_label': np.asarray(batch['label'])[perm].astype(np.int32),
            **common.latent_pair(key, rows, z_dim)}
  return eval_inputs


def _make_stage2(config, sample_batch, st: common.Settings) -> Method:
  common.check_stage2(config, sample_batch)
  r, c = sample_batch['img'].shape[1], sample_batch['img'].shape[-1]
  nets = make_nets(config, r, c)
  init_vars = load_init(config.student.init, nets)
  tx_g, tx_d = common.optimizers(config)

  def predict(ref_key, z_key):
    def fn(state, batch, frozen):
      del frozen
      return common.clip(_translate(nets, _params(state), st.guide, batch['img'],
                              batch[ref_key], batch[z_key],
                              batch['tgt_label'])[0])
    return fn

  return Method(
      init=partial(create_state, nets=nets, tx_g=tx_g, tx_d=tx_d,
                   init_vars=init_vars),
      train_step=partial(stage2_step, nets=nets, tx_g=tx_g, tx_d=tx_d,
                         st=st),
      predict={'student': predict('ref', 'z'),
               'student_alt': predict('ref2', 'z2'),
               # The references, as columns of the sample grid.
               'ref': lambda state, batch, frozen: batch['ref'],
               'ref2': lambda state, batch, frozen: batch['ref2']},
      finalize=lambda state, frozen: _finalize_nets(state, nets),
      export=('student', 'mapping', 'disc'),
      sample_rows=('img', 'ref', 'student', 'ref2', 'student_alt'),
      eval_inputs=stage2_eval_inputs(nets.mapping.z_dim))


def make(config, sample_batch) -> Method:
  st = common.settings(config)
  if config.kdit.stage == 1:
    return _make_stage1(config, st)
  return _make_stage2(config, sample_batch, st)

"""KDIT X2I student: a class-conditional generator distilled with a
semantic encoder (stage 1), then fine-tuned with class labels (stage 2).

Stage 1 (data-free, Eq. 8), per step on online triplets (x1, y):

  c_x = S_E(x1), c_y = S_E(y)       (S_E: D_T without its logit layer,
                                      initialized from D_T and trained)
  x1_hat = G_S(z, T1, c_x), y_hat = G_S(z, T1, c_y)
      (T1: the teacher's first feature map, 4x4, added to G_S's; it is the
       same for x1 and y since Phi feeds w1 to the first layers)
  D_S: softplus(-D([x1, y])) + softplus(D([x1_hat, y_hat]))
  G_S, S_E: lambda_adv adv + lambda_kdl L_kdl + lambda_srl L_srl
    L_kdl = sum alpha_l |G_T(w1)_l - H(G_S(.)_l)| + beta |x1 - x1_hat|
          + the same for (y, y_hat)                              (Eq. 6)
    L_srl = -mean min(|x1_hat - y_hat|, margin)       (Eq. 7, bounded)

Stage 2: c = ClassEmbed(label) (a new, small table; no teacher feature):
a class-conditional GAN on the data, D with one logit per class and R1.
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

FIRST = 'res4'        # the teacher feature added to the student's 4x4 map


@flax.struct.dataclass
class State:
  step: jax.Array
  student: NetState
  disc: NetState
  semantic: NetState | None = None
  hints: NetState | None = None
  embed: NetState | None = None


class Nets(flax.struct.PyTreeNode):
  gen: models.X2IGenerator = flax.struct.field(pytree_node=False)
  disc: models.ClassDiscriminator = flax.struct.field(pytree_node=False)
  embed: models.ClassEmbed = flax.struct.field(pytree_node=False)
  semantic: object = flax.struct.field(pytree_node=False, default=None)
  hints: models.Hints | None = flax.struct.field(pytree_node=False,
                                                 default=None)


def make_nets(config, resolution: int, channels: int) -> Nets:
  s = config.student
  return Nets(
      gen=models.X2IGenerator(z_dim=s.z_dim, c_dim=s.c_dim,
                              resolution=resolution, out_ch=channels,
                              ch=s.ch, t_ch=s.t_ch),
      disc=models.ClassDiscriminator(resolution=resolution,
                                     ch=config.disc.ch,
                                     num_classes=s.num_classes),
      embed=models.ClassEmbed(num_classes=s.num_classes, c_dim=s.c_dim))


def _zc(gen):
  return jnp.zeros((1, gen.z_dim + gen.c_dim))


def _image(gen):
  return jnp.zeros((1, gen.resolution, gen.resolution, gen.out_ch))


def create_state(key, *, nets: Nets, tx_g, tx_d, stage: int,
                 semantic_vars=None, hint_feats=None,
                 init_vars=None) -> State:
  g_key, d_key, e_key, h_key = jax.random.split(key, 4)
  student = create_net_state(nets.gen, tx_g, g_key, _zc(nets.gen))
  disc = create_net_state(nets.disc, tx_d, d_key, _image(nets.gen))
  if init_vars is not None:
    student = warm_start(student, tx_g, init_vars['student'])
    disc = warm_start(disc, tx_d, init_vars['disc'])
  state = State(step=jnp.zeros((), jnp.int32), student=student, disc=disc)
  if stage == 1:
    params = semantic_vars['params']
    params_h = nets.hints.init(h_key, hint_feats).get('params', {})
    return state.replace(
        semantic=NetState(params=params, opt_state=tx_g.init(params)),
        hints=NetState(params=params_h, opt_state=tx_g.init(params_h)))
  embed = create_net_state(nets.embed, tx_g, e_key,
                           jnp.zeros((1,), jnp.int32))
  return state.replace(embed=embed)


def _semantic(nets: Nets, params, x):
  return nets.semantic.apply({'params': params}, x)[1]['penultimate']


def _generate(nets: Nets, params, z, c, t_feat=None):
  return nets.gen.apply({'params': params}, z, c, t_feat,
                        method='generate')


def stage1_step(state: State, batch, key, frozen, *, nets: Nets, teacher,
                tx_g, tx_d, st: common.Settings, pairs, rows: int):
  del batch                                   # data-free: always {}
  tr, _, label, (z_key,) = common.stage1_triplets(
      key, state.step, teacher, frozen, st, rows, nets.disc.num_classes,
      extra_keys=1)
  z = jax.random.normal(z_key, (rows, nets.gen.z_dim))
  t1 = tr.g_x1[FIRST]
  nets_in = {'student': state.student, 'semantic': state.semantic,
             'hints': state.hints}

  def fwd(params):
    c_x = _semantic(nets, params['semantic'], tr.x1)
    c_y = _semantic(nets, params['semantic'], tr.y)
    x_hat, f_x = _generate(nets, params['student'], z, c_x, t1)
    y_hat, f_y = _generate(nets, params['student'], z, c_y, t1)
    hint = partial(nets.hints.apply, {'params': params['hints']})
    return (x_hat, y_hat), (hint(f_x), hint(f_y))

  both = jnp.concatenate([label, label])

  def disc_update(out):
    return common.d_update(state.disc, nets.disc, tx_d,
                           jnp.concatenate([tr.x1, tr.y]), both,
                           jnp.concatenate(out[0]), both)

  def out_loss(out, disc):
    (x_hat, y_hat), (f_x, f_y) = out
    l_x = losses.feature_l1(tr.g_x1, f_x, pairs) + losses.output_l1(
        tr.x1, x_hat, st.beta)
    l_y = losses.feature_l1(tr.g_y, f_y, pairs) + losses.output_l1(
        tr.y, y_hat, st.beta)
    l_srl = losses.semantic_diversity(x_hat, y_hat, st.srl_margin)
    l_adv = common.g_adv(disc, nets.disc, jnp.concatenate([x_hat, y_hat]),
                         both)
    kdl = l_x + l_y
    loss = (st.lambda_adv * l_adv + st.lambda_kdl * kdl
            + st.lambda_srl * l_srl)
    return loss, {'adv': l_adv, 'kdl_x': l_x, 'kdl_y': l_y, 'kdl': kdl,
                  'srl': l_srl}

  return common.update_step(state, nets_in, fwd, tx_g, disc_update,
                            out_loss)


def stage2_step(state: State, batch, key, frozen, *, nets: Nets, tx_g,
                tx_d, st: common.Settings):
  del frozen
  x, label, z = common.stage2_inputs(batch, key, state.step, nets.gen.z_dim)
  nets_in = {'student': state.student, 'embed': state.embed}

  def fwd(params):
    c = nets.embed.apply({'params': params['embed']}, label)[0]
    return _generate(nets, params['student'], z, c)[0]

  def disc_update(fake):
    return common.d_update(state.disc, nets.disc, tx_d, x, label, fake,
                           label, st.r1_weight)

  def out_loss(fake, disc):
    l_adv = common.g_adv(disc, nets.disc, fake, label)
    return st.lambda_adv * l_adv, {'adv': l_adv}

  return common.update_step(state, nets_in, fwd, tx_g, disc_update,
                            out_loss)


def _networks(state, nets: Nets):
  g = nets.gen
  return {
      'student': Network(g, {'params': state.student.params},
                         (g.z_dim + g.c_dim,), section='student'),
      'disc': Network(nets.disc, {'params': state.disc.params},
                      (g.resolution, g.resolution, g.out_ch),
                      section='disc')}


def _make_stage1(config, st: common.Settings) -> Method:
  teacher, frozen = common.load_teacher(config)
  g = teacher.gen
  nets = make_nets(config, g.resolution, g.out_ch)
  g_feats, d_feats = common.teacher_shapes(teacher, frozen)
  want = {'c_dim': d_feats['penultimate'].shape[-1],
          't_ch': g_feats[FIRST].shape[-1]}
  for k, v in want.items():
    if getattr(nets.gen, k) != v:
      raise errors.UserError(
          f'config.student.{k}={getattr(nets.gen, k)}: this teacher needs '
          f'{v} (c: the width of D_T\'s penultimate features; t_ch: the '
          f'width of G_T\'s {FIRST})')
  s_feats = jax.eval_shape(
      lambda z, c, t: nets.gen.apply(
          nets.gen.init(jax.random.key(0), _zc(nets.gen)), z, c, t,
          method='generate')[1],
      jnp.zeros((1, nets.gen.z_dim)), jnp.zeros((1, nets.gen.c_dim)),
      jnp.zeros(g_feats[FIRST].shape))
  pairs = common.pair_by_side(g_feats, s_feats, 'res', 'gen',
                              common.alpha_of(st.alpha))
  nets = nets.replace(semantic=teacher.disc, hints=models.Hints(
      common.hint_widths(g_feats, pairs)))
  hint_feats = {s: jnp.zeros(s_feats[s].shape) for _, s, _ in pairs}
  tx_g, tx_d = common.optimizers(config)
  trip, image_of = common.triplet_views(teacher, st.cutoff)

  def predict_student(name):
    def fn(state, batch, frozen):
      tr = trip(batch, frozen)
      img = tr.x1 if name == 'x' else tr.y
      c = _semantic(nets, state.semantic.params, img)
      return common.clip(_generate(nets, state.student.params, batch['z'],
                                   c, tr.g_x1[FIRST])[0])
    return fn

  def eval_inputs(batch, key):
    batch, key = common.triplet_latents(batch, key, g.z_dim)
    z = jax.random.normal(key, (len(batch['z1']), nets.gen.z_dim))
    return {**batch, 'z': np.asarray(z)}

  def finalize(state, frozen):
    return {**_networks(state, nets),
            'semantic_encoder': Network(
                teacher.disc, {'params': state.semantic.params},
                (g.resolution, g.resolution, g.out_ch), section='teacher'),
            'teacher': Network(g, frozen['g'], (g.z_dim,),
                               section='teacher')}

  return Method(
      init=partial(create_state, nets=nets, tx_g=tx_g, tx_d=tx_d, stage=1,
                   semantic_vars=frozen['d'], hint_feats=hint_feats),
      train_step=partial(stage1_step, nets=nets, teacher=teacher, tx_g=tx_g,
                         tx_d=tx_d, st=st, pairs=pairs,
                         rows=config.data.batch_size),
      predict={'x1': image_of('x1'), 'teacher': image_of('y'),
               'student_x': predict_student('x'),
               'student': predict_student('y')},
      finalize=finalize, export=('student', 'semantic_encoder', 'disc'),
      sample_rows=('x1', 'student_x', 'teacher', 'student'),
      eval_inputs=eval_inputs, needs_data=False, frozen=frozen)


def stage2_eval_inputs(z_dim: int):
  """Adds ``tgt_label`` (the row's class) and latents ``z``, ``z2``."""
  def eval_inputs(batch, key):
    return {**batch, 'tgt_label': np.asarray(batch['label'], np.int32),
            **common.latent_pair(key, len(batch['label']), z_dim)}
  return eval_inputs


def _make_stage2(config, sample_batch, st: common.Settings) -> Method:
  common.check_stage2(config, sample_batch)
  r, c = sample_batch['img'].shape[1], sample_batch['img'].shape[-1]
  nets = make_nets(config, r, c)
  spec = config.student.init
  init_vars = None
  if spec:
    init_vars = {
        'student': teachers.load_like(common.sibling(spec, 'student'),
                                      nets.gen, _zc(nets.gen),
                                      'student.init'),
        'disc': teachers.load_like(common.sibling(spec, 'disc'), nets.disc,
                                   _image(nets.gen), 'student.init')}
  tx_g, tx_d = common.optimizers(config)

  def predict(z_key):
    def fn(state, batch, frozen):
      del frozen
      cvec = nets.embed.apply({'params': state.embed.params},
                              batch['tgt_label'])[0]
      return common.clip(_generate(nets, state.student.params, batch[z_key],
                             cvec)[0])
    return fn

  def finalize(state, frozen):
    del frozen
    return {**_networks(state, nets),
            'embed': Network(nets.embed, {'params': state.embed.params}, (),
                             jnp.int32, section='student')}

  return Method(
      init=partial(create_state, nets=nets, tx_g=tx_g, tx_d=tx_d, stage=2,
                   init_vars=init_vars),
      train_step=partial(stage2_step, nets=nets, tx_g=tx_g, tx_d=tx_d,
                         st=st),
      predict={'student': predict('z'), 'student_alt': predict('z2')},
      finalize=finalize, export=('student', 'embed', 'disc'),
      sample_rows=('img', 'student', 'student_alt'),
      eval_inputs=stage2_eval_inputs(nets.gen.z_dim))


def make(config, sample_batch) -> Method:
  st = common.settings(config)
  if config.kdit.stage == 1:
    return _make_stage1(config, st)
  return _make_stage2(config, sample_batch, st)

"""What both KDIT students share: the teacher, the class-headed D update,
one update of several networks from one loss, hint pairing, settings.

The teacher is a style-based generator and its discriminator
(``gcjax.models.stylegan``), from a finished ``gan`` run (flavour
``stylegan``, which exports ``generator`` and ``disc``) or, with
``teacher.init=''`` and ``teacher.random=True``, random networks of the
``teacher`` fields (smoke runs and tests only).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gcjax import errors, teachers
from gcjax.methods.base import (
  NetState,
  apply_gradients,
  global_norm,
  make_adam,
  prefix,
  require_data,
)
from gcjax.models import kdit as models
from gcjax.models import stylegan
from gcjax.objectives import adversarial
from gcjax.objectives import kdit as losses
from gcjax.recipes import triplets

PyTree = Any
GUIDES = ('reference', 'latent')


class Teacher(NamedTuple):
  gen: stylegan.StyleGenerator
  disc: stylegan.StyleDiscriminator


class Settings(NamedTuple):
  """Static loss settings of a KDIT step (``config.kdit``)."""
  cutoff: int
  lambda_adv: float
  lambda_kdl: float
  gamma: float
  tau: float
  alpha: float
  beta: float
  lambda_srl: float
  srl_margin: float
  lambda_sty: float
  lambda_cyc: float
  r1_weight: float
  guide: str


def settings(config) -> Settings:
  k = config.kdit
  if k.guide not in GUIDES:
    raise errors.UserError(f'config.kdit.guide={k.guide!r}; expected one of '
                           f'{GUIDES}')
  if k.srl_margin <= 0:
    raise errors.UserError(f'config.kdit.srl_margin must be > 0, got '
                           f'{k.srl_margin}')
  return Settings(
      cutoff=int(k.cutoff), lambda_adv=float(k.lambda_adv),
      lambda_kdl=float(k.lambda_kdl), gamma=float(k.gamma),
      tau=float(k.tau), alpha=float(k.alpha), beta=float(k.beta),
      lambda_srl=float(k.lambda_srl), srl_margin=float(k.srl_margin),
      lambda_sty=float(k.lambda_sty), lambda_cyc=float(k.lambda_cyc),
      r1_weight=float(k.r1_weight), guide=k.guide)


def disc_spec(init: str, disc_init: str) -> str:
  """The teacher D's spec: ``disc_init``, else the ``disc`` of the run
  that ``init`` names (``run:W`` or ``run:W:generator`` -> ``run:W:disc``)."""
  if disc_init:
    return disc_init
  if not init.startswith('run:'):
    raise errors.UserError(f'config.teacher.init={init!r}: set '
                           'config.teacher.disc_init to the teacher D')
  rest = init[len('run:'):]
  if rest.endswith(':generator'):
    rest = rest[:-len(':generator')]
  return f'run:{rest}:disc'


def load_teacher(config) -> tuple[Teacher, dict]:
  """The frozen teacher networks and ``{'g': vars, 'd': vars}``."""
  t = config.teacher
  if not t.init and not t.random:
    raise errors.UserError(
        "config.teacher.init is empty: KDIT distils a trained style-based "
        "teacher. Give one (--config.teacher.init=run:<a "
        "configs/kdit_teacher.py workdir>), or let the run train it first "
        "(--config.teacher.train=configs/kdit_teacher.py, the default "
        "preset's), or set teacher.random=True (tests)")
  if not t.init:
    gen = stylegan.StyleGenerator(
        z_dim=t.z_dim, w_dim=t.w_dim, map_layers=t.map_layers,
        resolution=t.resolution, out_ch=t.channels, ch_base=t.ch_base,
        ch_max=t.ch_max)
    disc = stylegan.StyleDiscriminator(resolution=t.resolution, z_dim=0,
                                       ch_base=t.ch_base, ch_max=t.ch_max)
    gk, dk = jax.random.split(jax.random.key(config.seed + 1))
    g_vars = gen.init(gk, jnp.zeros((1, t.z_dim)))
    d_vars = disc.init(dk, jnp.zeros((1, t.resolution, t.resolution,
                                      t.channels)))
  else:
    gen, g_vars = teachers.load(t.init)
    disc, d_vars = teachers.load(disc_spec(t.init, t.disc_init))
    if not isinstance(gen, stylegan.StyleGenerator) or not isinstance(
        disc, stylegan.StyleDiscriminator):
      raise errors.UserError(
          f'config.teacher.init={t.init!r}: KDIT needs a style-based '
          'generator and discriminator (a gan run of flavour stylegan, e.g. '
          f'configs/kdit_teacher.py); got {type(gen).__name__} and '
          f'{type(disc).__name__}')
  n_ws = gen.num_ws
  if not 0 < config.kdit.cutoff < n_ws:
    raise errors.UserError(f'config.kdit.cutoff={config.kdit.cutoff}; '
                           f'expected 1..{n_ws - 1} (the teacher has {n_ws} '
                           'synthesis layers)')
  return Teacher(gen, disc), {'g': g_vars, 'd': d_vars}


def teacher_shapes(teacher: Teacher, frozen) -> tuple[dict, dict]:
  """Shapes of the teacher G's and D's features (``res<r>``, ``block<r>``)."""
  g = teacher.gen
  ws = jax.ShapeDtypeStruct((1, g.num_ws, g.w_dim), jnp.float32)
  _, g_feats = jax.eval_shape(
      lambda w: g.apply(frozen['g'], w, method='synthesize'), ws)
  img = jax.ShapeDtypeStruct((1, g.resolution, g.resolution, g.out_ch),
                             jnp.float32)
  _, d_feats = jax.eval_shape(lambda x: teacher.disc.apply(frozen['d'], x),
                              img)
  return g_feats, d_feats


def pair_by_side(teacher_feats: dict, student_feats: dict, prefix_t: str,
                 prefix_s: str, weight) -> list[tuple[str, str, float]]:
  """(teacher name, student name, weight) for student features
  ``<prefix_s><r>`` and teacher features ``<prefix_t>*`` of the same
  spatial side; ``weight`` is a number or ``fn(teacher width)``."""
  by_side = {v.shape[1]: k for k, v in teacher_feats.items()
             if k.startswith(prefix_t) and len(v.shape) == 4}
  pairs = []
  for name, v in sorted(student_feats.items()):
    if name.startswith(prefix_s) and v.shape[1] in by_side:
      t = by_side[v.shape[1]]
      w = weight(teacher_feats[t].shape[-1]) if callable(weight) else weight
      pairs.append((t, name, float(w)))
  return pairs


def hint_widths(teacher_feats: dict, pairs) -> tuple[tuple[str, int], ...]:
  return tuple((s, int(teacher_feats[t].shape[-1])) for t, s, _ in pairs)


def alpha_of(alpha: float):
  """Per-feature generator weight: ``alpha`` below 128 channels, alpha/10
  from 128 on (the appendix's 0.1 / 0.01)."""
  return lambda width: losses.width_weight(width, alpha, alpha / 10)


def d_update(disc: NetState, module, tx: optax.GradientTransformation,
             real: jax.Array, real_label: jax.Array, fake: jax.Array,
             fake_label: jax.Array, r1_weight: float = 0.0):
  """One vanilla-GAN update of a class-headed D (each row judged by the
  logit of its class); R1 on the real rows when ``r1_weight`` > 0."""
  fake = jax.lax.stop_gradient(fake)

  def loss_fn(params):
    def logit(x, label):
      return models.pick(module.apply({'params': params}, x)[0], label)
    l_real, l_fake = logit(real, real_label), logit(fake, fake_label)
    loss = adversarial.gan_d_loss(l_real, l_fake, 'vanilla')
    m = {'real': jnp.mean(l_real), 'fake': jnp.mean(l_fake)}
    if r1_weight > 0:
      m['r1'] = adversarial.r1_penalty(lambda x: logit(x, real_label), real)
      loss = loss + r1_weight * m['r1']
    m['loss'] = loss
    return loss, m

  (_, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(disc.params)
  m['grad_norm'] = global_norm(grads)
  return apply_gradients(disc, grads, tx), m


def g_adv(disc: NetState, module, fake: jax.Array,
          label: jax.Array) -> jax.Array:
  """Non-saturating generator loss against the class-headed D."""
  logits = models.pick(module.apply({'params': disc.params}, fake)[0], label)
  return adversarial.gan_g_loss(logits, 'vanilla')


def joint_update(nets: dict, txs: dict, vjp, out, out_loss):
  """Updates every network in ``nets`` from one loss on ``out``.

  ``out, vjp = jax.vjp(fwd, {name: params})``; ``out_loss(out) -> (loss,
  metrics)``. Returns (new nets dict, metrics + loss, grad_norm).
  """
  (loss, m), d_out = jax.value_and_grad(out_loss, has_aux=True)(out)
  grads, = vjp(d_out)
  new = {k: apply_gradients(nets[k], grads[k], txs[k]) for k in nets}
  return new, {**m, 'loss': loss, 'grad_norm': global_norm(grads)}


def optimizers(config) -> tuple[optax.GradientTransformation,
                                 optax.GradientTransformation]:
  """(tx_g, tx_d) from ``config.optim``: G's for every student network."""
  return (make_adam(**config.optim.g, total_steps=config.total_steps),
          make_adam(**config.optim.d, total_steps=config.total_steps))


def clip(x: jax.Array) -> jax.Array:
  return jnp.clip(x, -1.0, 1.0)


def stage1_triplets(key, state_step, teacher: Teacher, frozen,
                    st: Settings, rows: int, num_classes: int,
                    extra_keys: int = 0):
  """What a stage-1 step starts from: (triplets, z2, random labels, keys).

  ``key`` is folded with the step and split into ``2 + extra_keys``: the
  first draws z1, z2, the second the labels; the rest are returned.
  """
  keys = jax.random.split(jax.random.fold_in(key, state_step),
                          2 + extra_keys)
  z1, z2 = triplets.latents(keys[0], rows, teacher.gen.z_dim)
  tr = triplets.make(teacher.gen, frozen['g'], teacher.disc, frozen['d'],
                     z1, z2, st.cutoff)
  return tr, z2, random_labels(keys[1], rows, num_classes), tuple(keys[2:])


def stage2_inputs(batch, key, state_step, z_dim: int):
  """(images, labels, latents [B, z_dim]) of a stage-2 step; the latents
  from ``key`` folded with the step."""
  x = batch['img']
  z = jax.random.normal(jax.random.fold_in(key, state_step),
                        (x.shape[0], z_dim))
  return x, batch['label'], z


def update_step(state, nets_in: dict, fwd, tx_g, disc_update, out_loss):
  """One KDIT step after the inputs: D, then every student network.

  ``fwd({name: params}) -> out`` runs the student networks ``nets_in``
  (name -> NetState); ``disc_update(out) -> (disc, metrics)`` updates D
  on the (stop-gradient) output; ``out_loss(out, disc) -> (loss,
  metrics)`` is the students' loss against the updated D. Returns the new
  state (step + 1) and the ``g/``, ``d/`` metrics.
  """
  out, vjp = jax.vjp(fwd, {k: v.params for k, v in nets_in.items()})
  disc, m_d = disc_update(out)
  new, m_g = joint_update(nets_in, dict.fromkeys(nets_in, tx_g), vjp, out,
                          lambda o: out_loss(o, disc))
  return state.replace(step=state.step + 1, disc=disc, **new), {
      **prefix('g', m_g), **prefix('d', m_d)}


def triplet_views(teacher: Teacher, cutoff: int):
  """(trip, image_of) for stage-1 predict functions: ``trip(batch,
  frozen)`` makes the triplets of the batch's z1, z2; ``image_of(name)``
  is a predict function showing one of them (``x1``, ``x2``, ``y``)."""
  def trip(batch, frozen):
    return triplets.make(teacher.gen, frozen['g'], teacher.disc,
                         frozen['d'], batch['z1'], batch['z2'], cutoff)

  def image_of(name):
    return lambda state, batch, frozen: clip(getattr(trip(batch, frozen),
                                                     name))
  return trip, image_of


def triplet_latents(batch, key, z_dim: int):
  """Stage-1 evaluation rows: ``batch`` + teacher latents z1, z2; the
  second half of ``key`` for what the student adds."""
  rows = len(next(iter(batch.values())))
  k1, k2 = jax.random.split(key)
  z1, z2 = triplets.latents(k1, rows, z_dim)
  return {**batch, 'z1': np.asarray(z1), 'z2': np.asarray(z2)}, k2


def latent_pair(key, rows: int, z_dim: int) -> dict:
  """Stage-2 evaluation latents ``z``, ``z2`` (two outputs per row)."""
  k1, k2 = jax.random.split(key)
  return {'z': np.asarray(jax.random.normal(k1, (rows, z_dim))),
          'z2': np.asarray(jax.random.normal(k2, (rows, z_dim)))}


def check_stage2(config, sample_batch) -> None:
  """Stage 2 trains on class-labelled images, from stage 1 unless it is
  the from-scratch baseline."""
  require_data(sample_batch, 'kdit stage 2')
  for k in ('img', 'label'):
    if k not in sample_batch:
      raise errors.UserError(f'kdit stage 2 needs class-labelled images '
                             f'(batch keys img, label; e.g. data name '
                             f'"fashion"); got {sorted(sample_batch)}')
  if not config.student.init and not config.kdit.from_scratch:
    raise errors.UserError(
        "config.student.init is empty: stage 2 starts from stage 1's "
        'export (run:<stage-1 workdir>); for the from-scratch baseline use '
        'the :scratch option (kdit.from_scratch=True)')


def sibling(spec: str, net: str) -> str:
  """``run:W`` / ``run:W:student`` -> ``run:W:<net>``."""
  rest = spec[len('run:'):] if spec.startswith('run:') else ''
  if not rest:
    raise errors.UserError(f'config.student.init={spec!r}: expected '
                           'run:<stage-1 workdir>')
  if rest.endswith(':student'):
    rest = rest[:-len(':student')]
  return f'run:{rest}:{net}'


def random_labels(key: jax.Array, rows: int, num_classes: int) -> jax.Array:
  """Stage 1 has no classes: each row trains a random class head of D
  (and of the mapping net), so every head starts from the distilled one."""
  return jax.random.randint(key, (rows,), 0, num_classes)


def partner_rows(labels: np.ndarray, avoid: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
  """For each row i, a random row j with ``labels[j] == labels[avoid[i]]``
  and ``j != avoid[i]`` (``avoid[i]`` when no such row exists)."""
  labels = np.asarray(labels)
  out = np.array(avoid, copy=True)
  for i, a in enumerate(avoid):
    cand = np.flatnonzero((labels == labels[a]) & (np.arange(len(labels))
                                                   != a))
    if len(cand):
      out[i] = rng.choice(cand)
  return out

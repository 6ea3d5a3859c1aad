"""Method ``kd``: distil an unconditional DCGAN teacher into a smaller one.

Aguinaldo et al. (2019), "Compressing GANs using Knowledge Distillation": a
student generator with a smaller depth scale d is trained on fresh latents z
every step to reproduce the frozen teacher's output on the same z.

``config.loss.kind``:
  * ``'mse'``: mean squared error between student and teacher images (their
    eq. 3);
  * ``'joint'``: MSE + ``lambda_adv`` * the adversarial loss against the
    method's own discriminator (their eq. 4);
  * ``'scratch'``: the baseline: the student-sized network trained as a
    plain GAN (adversarial loss only), same steps and batch.

The discriminator's real images come from ``config.loss.real``: ``'data'``
(``batch['img']``, e.g. Fashion-MNIST; also the evaluators' target) or
``'teacher'`` (teacher samples on latents independent of the student's, so
no real data is needed: the pretrained face teacher's setting). Adversarial
recipes (NS-GAN, WGAN-GP with ``n_critic``) are those of ``gan_dcgan``.

The teacher (``config.teacher.kind``) is frozen, passed through
``Method.frozen`` and never checkpointed: ``'face'`` is the pretrained
gan-face-generate DCGAN (64x64 RGB, nz 100, d 64); ``'export'`` loads
``<export_dir>/<export_name>.npz`` written by a gcjax run (e.g.
``configs/dcgan_teacher.py``); ``'random'`` is a randomly initialised DCGAN
(tests and smoke runs only).
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from gcjax.methods import gan_dcgan as dc
from gcjax.methods.base import (
  CostModel,
  Method,
  NetState,
  apply_gradients,
  create_net_state,
  global_norm,
  make_adam,
  prefix,
  variables_of,
)
from gcjax.models import dcgan

LOSSES = ('mse', 'joint', 'scratch')
REAL_SOURCES = ('data', 'teacher')
TEACHERS = ('face', 'export', 'random')


class Weights(NamedTuple):
  """Static loss recipe: MSE and adversarial weights, the D's real source."""
  mse: float
  adv: float
  real: str


def loss_weights(kind: str, lambda_adv: float, real: str) -> Weights:
  """(mse, adv) weights of ``kind``: mse (1, 0), joint (1, lambda), scratch
  (0, 1)."""
  if kind not in LOSSES:
    raise ValueError(f'config.loss.kind={kind!r}; expected one of {LOSSES}')
  if real not in REAL_SOURCES:
    raise ValueError(f'config.loss.real={real!r}; expected one of '
                     f'{REAL_SOURCES}')
  mse, adv = {'mse': (1.0, 0.0), 'joint': (1.0, float(lambda_adv)),
              'scratch': (0.0, 1.0)}[kind]
  return Weights(mse=mse, adv=adv, real=real)


def student_loss(s_img: jax.Array, t_img: jax.Array, adv_loss: jax.Array,
                 w: Weights) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``w.mse`` * MSE(student, teacher) + ``w.adv`` * adversarial.

  Args:
    s_img: [B, R, R, C] float32 student images.
    t_img: [B, R, R, C] float32 teacher images on the same latents.
    adv_loss: scalar generator adversarial loss of ``s_img``.
    w: the weights.

  Returns:
    (scalar loss, metrics with 'mse', 'adv', 'loss').
  """
  mse = jnp.mean(jnp.square(s_img - t_img))
  loss = w.mse * mse + w.adv * adv_loss
  return loss, {'mse': mse, 'adv': adv_loss, 'loss': loss}


@flax.struct.dataclass
class State:
  step: jax.Array
  student: NetState
  disc: Any = None        # NetState when the loss has an adversarial part
  mi: Any = None          # the MI add-on's state pytree (or None)


class Nets(NamedTuple):
  teacher: dcgan.DCGANGenerator
  student: dcgan.DCGANGenerator
  disc: dcgan.DCGANDiscriminator | None


class Txs(NamedTuple):
  student: optax.GradientTransformation
  disc: optax.GradientTransformation | None


def dcgan_from_variables(variables) -> dcgan.DCGANGenerator:
  """The DCGANGenerator whose parameters ``variables`` holds.

  Reads nz, d, the output channels and the resolution from the kernel
  shapes (flax HWIO: conv0 [k0, k0, nz, w0], the last conv [4, 4, d, C]):
  k0 = 7 is the 28x28 net; else 3 hidden layers is 32x32, 4 is 64x64.
  """
  p = variables.get('params', {})
  convs = sorted((k for k in p if k.startswith('conv')),
                 key=lambda k: int(k[4:]))
  if not convs or convs[0] != 'conv0':
    raise ValueError('not DCGANGenerator variables: expected params conv0.. '
                     f'got {sorted(p)}')
  k0, _, nz, _ = tuple(p['conv0']['kernel'].shape)
  _, _, d, out_ch = tuple(p[convs[-1]]['kernel'].shape)
  n_hidden = len(convs) - 1
  if k0 == 7:
    resolution = 28
  else:
    resolution = {3: 32, 4: 64}.get(n_hidden)
  if resolution is None:
    raise ValueError(f'cannot infer the DCGAN resolution from {len(convs)} '
                     f'transposed convs with a {k0}x{k0} first kernel')
  norm = 'batch' if 'batch_stats' in variables else 'none'
  return dcgan.DCGANGenerator(d=int(d), nz=int(nz), out_ch=int(out_ch),
                              resolution=resolution, norm=norm)


def load_teacher(section, seed: int):
  """(module, variables) of the frozen teacher from ``config.teacher``."""
  kind = section.kind
  if kind == 'face':
    from gcjax import convert
    return convert.load_face_dcgan()
  if kind == 'export':
    from gcjax import export as export_lib
    path = os.path.join(section.export_dir, f'{section.export_name}.npz')
    if not section.export_dir or not os.path.exists(path):
      raise FileNotFoundError(
          f'config.teacher.export_dir={section.export_dir!r}: no '
          f'{section.export_name}.npz there; train a teacher first (e.g. '
          'configs/dcgan_teacher.py) and pass its <workdir>/export')
    variables = jax.tree.map(jnp.asarray, export_lib.load_variables(path))
    return dcgan_from_variables(variables), variables
  if kind == 'random':
    module = dcgan.DCGANGenerator(d=section.d, nz=section.nz,
                                  out_ch=section.channels,
                                  resolution=section.resolution,
                                  norm='batch')
    variables = jax.jit(module.init)(jax.random.key(seed),
                                     jnp.zeros((1, section.nz)))
    return module, variables
  raise ValueError(f'config.teacher.kind={kind!r}; expected one of '
                   f'{TEACHERS}')


def create_state(key, *, nets: Nets, txs: Txs, image_shape, mi) -> State:
  s_key, d_key, mi_key = jax.random.split(key, 3)
  student = create_net_state(nets.student, txs.student, s_key,
                             jnp.zeros((1, nets.student.nz)))
  disc = None
  if nets.disc is not None:
    disc = create_net_state(nets.disc, txs.disc, d_key,
                            jnp.zeros((1, *image_shape)))
  return State(step=jnp.zeros((), jnp.int32), student=student, disc=disc,
               mi=mi.init(mi_key) if mi is not None else None)


def _teacher(nets: Nets, frozen, z):
  (img, _), _ = dc.gen_apply(nets.teacher, frozen['teacher']['params'],
                             frozen['teacher'].get('batch_stats'), z, False)
  return jax.lax.stop_gradient(img)


def train_step(state: State, batch, key, frozen, *, nets: Nets, txs: Txs,
               w: Weights, adv: dc.Adversarial, mi):
  """Critic update(s) (if adversarial), MI critic update, student update.

  The student's latents are drawn from the step key, unless the batch
  carries ``z`` [B, nz] (then its last ``B / n_critic`` rows are used).
  """
  key = jax.random.fold_in(key, state.step)
  n = adv.n_critic if nets.disc is not None else 1
  keys = jax.random.split(key, 3 * n + 1)
  z_keys, gp_keys, r_keys = keys[:n], keys[n:2 * n], keys[2 * n:3 * n]
  mi_key = keys[-1]
  rows = next(iter(batch.values())).shape[0]
  if rows % n:
    raise ValueError(f'batch of {rows} is not divisible by '
                     f'config.loss.n_critic={n}')
  b, nz = rows // n, nets.student.nz

  def reals(i, t_img=None):
    if w.real == 'data':
      return dc.chunks(batch[dc.IMAGE_KEY], n)[i]
    if t_img is not None:
      return t_img
    return _teacher(nets, frozen, jax.random.normal(r_keys[i], (b, nz)))

  def s_fwd(params, z):
    (img, _), bs = dc.gen_apply(nets.student, params,
                                state.student.batch_stats, z, True)
    return img, bs

  disc, metrics = state.disc, {}
  for i in range(n - 1):
    fake, _ = s_fwd(state.student.params,
                    jax.random.normal(z_keys[i], (b, nz)))
    disc, m_d = dc.critic_update(disc, nets.disc, txs.disc, reals(i), fake,
                                 gp_keys[i], adv)
  # Fresh latents every step; a batch may pin them (fixed-z experiments).
  z = (dc.chunks(batch['z'], n)[-1] if 'z' in batch
       else jax.random.normal(z_keys[-1], (b, nz)))
  s_img, s_vjp, s_bs = jax.vjp(lambda p: s_fwd(p, z), state.student.params,
                               has_aux=True)
  t_img = _teacher(nets, frozen, z)
  if nets.disc is not None:
    # With real='teacher' the last critic update reuses the teacher images
    # of the student's latents: D scores images one by one, so the pairing
    # is invisible to it and one teacher forward is saved.
    disc, m_d = dc.critic_update(disc, nets.disc, txs.disc,
                                 reals(n - 1, t_img), s_img, gp_keys[-1],
                                 adv)
    metrics.update(prefix('d', m_d))
  mi_state, mi_aux = state.mi, None
  if mi is not None:
    mi_state, mi_aux, m_mi = mi.update(state.mi, t_img,
                                       jax.lax.stop_gradient(s_img), mi_key)
    metrics.update(m_mi)

  def out_loss(img):
    adv_loss = (dc.gen_adv_loss(nets.disc, disc, img, adv)
                if nets.disc is not None else jnp.zeros(()))
    loss, m = student_loss(img, t_img, adv_loss, w)
    if mi is not None:
      mi_term, m_s = mi.student_loss(mi_state, t_img, img, mi_aux)
      loss = loss + mi_term
      m = {**m, **m_s, 'loss': loss}
    return loss, m

  (_, m_s), d_img = jax.value_and_grad(out_loss, has_aux=True)(s_img)
  grads, = s_vjp(d_img)
  m_s['grad_norm'] = global_norm(grads)
  metrics.update(prefix('s', m_s))
  student = apply_gradients(state.student, grads, txs.student,
                            batch_stats=s_bs)
  new = state.replace(step=state.step + 1, student=student, disc=disc,
                      mi=mi_state)
  return new, metrics


def teacher_fwd(state: State, batch, frozen, *, nets: Nets):
  """Teacher images [B, R, R, C] in [-1, 1] from ``batch['z']``."""
  del state
  return _teacher(nets, frozen, dc.fixed_latents(batch, nets.teacher.nz))


def student_fwd(state: State, batch, frozen, *, nets: Nets):
  """Student images [B, R, R, C] in [-1, 1] from ``batch['z']``."""
  del frozen
  (img, _), _ = dc.gen_apply(nets.student, state.student.params,
                             state.student.batch_stats,
                             dc.fixed_latents(batch, nets.student.nz), False)
  return img


def _make_mi(config, image_shape, total_steps: int):
  """The MI add-on from ``config.mi`` (None without one or kind 'none')."""
  if 'mi' not in config or config.mi.kind == 'none':
    return None
  from gcjax.objectives import mi as mi_lib
  return mi_lib.make_mi_from_config(config.mi, t_shape=image_shape,
                                    s_shape=image_shape,
                                    total_steps=total_steps)


def make(config, sample_batch) -> Method:
  """Builds ``kd`` from config.teacher/student/disc/loss/optim (+ mi)."""
  teacher, t_vars = load_teacher(config.teacher, config.seed + 1)
  shape = (teacher.resolution, teacher.resolution, teacher.out_ch)
  lc = config.loss
  w = loss_weights(lc.kind, lc.lambda_adv, lc.real)
  adv = dc.Adversarial(kind=lc.adversarial, gp_weight=lc.gp_weight,
                       n_critic=lc.n_critic)
  dc.check_adversarial(adv, config.disc.norm)
  if w.real == 'data':
    got = sample_batch.get(dc.IMAGE_KEY)
    if got is None or tuple(got.shape[1:]) != shape:
      raise ValueError(
          f"config.loss.real='data' needs batch[{dc.IMAGE_KEY!r}] images of "
          f'shape {shape} (the teacher output); got '
          f'{None if got is None else tuple(got.shape[1:])} from data '
          f'{config.data.name!r}: set config.data.args.resolution/channels')
  student = dcgan.DCGANGenerator(d=config.student.d, nz=teacher.nz,
                                 out_ch=teacher.out_ch,
                                 resolution=teacher.resolution,
                                 norm=config.student.norm)
  use_disc = w.adv > 0
  disc = (dcgan.DCGANDiscriminator(d=config.disc.d,
                                   resolution=teacher.resolution,
                                   norm=config.disc.norm)
          if use_disc else None)
  nets = Nets(teacher=teacher, student=student, disc=disc)
  o, n = config.optim, config.total_steps
  txs = Txs(student=make_adam(**o.s, total_steps=n),
            disc=make_adam(**o.d, total_steps=n) if use_disc else None)
  mi = _make_mi(config, shape, n)

  def cost(module, variables):
    return CostModel(fwd=lambda v, z: module.apply(v, z, train=False)[0],
                     variables=variables, input_shape=(module.nz,))

  return Method(
      init=partial(create_state, nets=nets, txs=txs, image_shape=shape,
                   mi=mi),
      train_step=partial(train_step, nets=nets, txs=txs, w=w, adv=adv,
                         mi=mi),
      predict={'teacher': partial(teacher_fwd, nets=nets),
               'student': partial(student_fwd, nets=nets)},
      sample_rows=('teacher', 'student'),
      cost_models={
          'teacher': cost(teacher, lambda s, f: f['teacher']),
          'student': cost(student, lambda s, f: variables_of(s.student))},
      target_key=dc.IMAGE_KEY if w.real == 'data' else None,
      reference='teacher', latent_dim=teacher.nz,
      frozen={'teacher': t_vars})

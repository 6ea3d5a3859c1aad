"""A data-free toy method: the worked example of docs/adding_a_method.md.

A small DCGAN student learns a frozen DCGAN teacher's z -> image map by MSE
on fresh latents each step. It reads no dataset (``needs_data=False``), so
the trainer loads none; evaluation batches get their latents from
``eval_inputs``. Use it as ``config.method = 'plugins.toy_datafree'`` (a
dotted module path: a plug-in kept outside gcjax).
"""

from functools import partial

import flax
import jax
import jax.numpy as jnp

from gcjax import teachers
from gcjax.methods.base import (
  Method,
  NetState,
  Network,
  apply_net,
  create_net_state,
  make_adam,
  output_update,
  prefix,
  variables_of,
)
from gcjax.methods.gan import dcgan as gan_dcgan
from gcjax.models import dcgan


@flax.struct.dataclass
class State:
  step: jax.Array
  student: NetState


def init(key, *, student, tx):
  z = jnp.zeros((1, student.nz))
  return State(step=jnp.zeros((), jnp.int32),
               student=create_net_state(student, tx, key, z))


def train_step(state, batch, key, frozen, *, teacher, student, tx,
               rows: int):
  del batch                                   # data-free: always {}
  z = jax.random.normal(jax.random.fold_in(key, state.step),
                        (rows, student.nz))
  target = teacher.apply(frozen['teacher'], z)[0]

  def fwd(params):
    (img, _), bs = apply_net(student, params, state.student.batch_stats, z,
                             train=True)
    return img, bs

  img, vjp, bs = jax.vjp(fwd, state.student.params, has_aux=True)
  new, m = output_update(
      state.student, tx, vjp, img,
      lambda x: (jnp.mean(jnp.square(x - target)), {}), batch_stats=bs)
  return state.replace(step=state.step + 1, student=new), prefix('s', m)


def make(config, sample_batch) -> Method:
  del sample_batch                            # None: no data was loaded
  t = config.teacher
  teacher = dcgan.DCGANGenerator(d=t.d, nz=t.nz, out_ch=1, resolution=28)
  loaded = teachers.load(t.init)
  if loaded is not None:
    teacher, t_vars = loaded
  else:
    t_vars = teacher.init(jax.random.key(config.seed + 1),
                          jnp.zeros((1, t.nz)))
  student = dcgan.DCGANGenerator(d=config.student.d, nz=teacher.nz,
                                 out_ch=teacher.out_ch,
                                 resolution=teacher.resolution)
  tx = make_adam(**config.optim.s, total_steps=config.total_steps)
  z_shape = (teacher.nz,)

  def predict_teacher(state, batch, frozen):
    del state
    return teacher.apply(frozen['teacher'], batch['z'])[0]

  def predict_student(state, batch, frozen):
    del frozen
    return apply_net(student, state.student.params,
                     state.student.batch_stats, batch['z'], train=False)[0][0]

  def finalize(state, frozen):
    return {'teacher': Network(teacher, frozen['teacher'], z_shape,
                               section='teacher'),
            'student': Network(student, variables_of(state.student), z_shape,
                               section='student')}

  return Method(
      init=partial(init, student=student, tx=tx),
      train_step=partial(train_step, teacher=teacher, student=student, tx=tx,
                         rows=config.data.batch_size),
      predict={'teacher': predict_teacher, 'student': predict_student},
      finalize=finalize, export=('student',),
      sample_rows=('teacher', 'student'),
      eval_inputs=gan_dcgan.latent_inputs(teacher.nz),
      needs_data=False, frozen={'teacher': t_vars})

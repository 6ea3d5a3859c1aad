"""What both ``prune`` tasks share: recipes, the pruner, the state, teachers.

A recipe (``config.prune.recipe``) says which losses fine-tune the pruned
generator and whether the discriminator trains (the appendix's letters):

| recipe | generator loss | D | appendix |
|---|---|---|---|
| ``self`` | original G loss vs the teacher's D + lambda * distillation | frozen (``train_disc`` to train it) | (b) |
| ``naive`` | original G loss | trains | (d) one-shot, (e) AGP |
| ``distill`` | lambda * distillation only | none | (g) one-shot, (h) AGP |
| ``scratch`` | original G loss; a smaller dense G and a fresh D, random init | trains | (c) |
| ``both`` | original G loss; D pruned too (fine-grained) | trains | (n) |

"Original G loss" is the task's: the adversarial term (+ ``lambda_l1`` * L1
to the target on Pix2Pix). Distillation compares the student with the dense
teacher's output on the same input (``prune.distill_loss``: mse | l1); the
MI add-on (``config.mi``) adds its term to it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from gcjax import errors, materialize, pruning, teachers
from gcjax.methods.base import Network, variables_of
from gcjax.state import NetState, apply_net, make_adam, output_update, prefix

RECIPES = ('self', 'naive', 'distill', 'scratch', 'both')
DISTILL = ('mse', 'l1')


class Recipe(NamedTuple):
  """Static loss recipe of a ``prune`` run."""
  name: str
  adv: float          # weight of the adversarial term
  task: float         # weight of the task loss (Pix2Pix L1 to the target)
  distill: float      # weight of distillation to the teacher
  distill_loss: str
  train_disc: bool
  prune_disc: bool
  scratch: bool


def make_recipe(section, lambda_task: float = 0.0) -> Recipe:
  """The recipe of ``config.prune`` (UserError on an unknown name)."""
  name = section.recipe
  if name not in RECIPES:
    raise errors.UserError(f'config.prune.recipe={name!r}; expected one of '
                           f'{RECIPES}')
  if section.distill_loss not in DISTILL:
    raise errors.UserError(f'config.prune.distill_loss='
                           f'{section.distill_loss!r}; expected one of '
                           f'{DISTILL}')
  lam = float(section.lambda_distill)
  original = dict(adv=1.0, task=lambda_task, distill=0.0)
  weights = {'self': dict(adv=1.0, task=lambda_task, distill=lam),
             'naive': original, 'scratch': original, 'both': original,
             'distill': dict(adv=0.0, task=0.0, distill=lam)}[name]
  train_disc = name in ('naive', 'scratch', 'both') or (
      name == 'self' and bool(section.train_disc))
  return Recipe(name=name, distill_loss=section.distill_loss,
                train_disc=train_disc, prune_disc=name == 'both',
                scratch=name == 'scratch', **weights)


def distance(kind: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean squared or absolute difference."""
  d = a - b
  return jnp.mean(jnp.square(d)) if kind == 'mse' else jnp.mean(jnp.abs(d))


class Pruner(NamedTuple):
  """Static description of how one network is pruned."""
  kind: str                       # fine | filter
  scope: str                      # layer | global (fine only)
  layers: tuple[str, ...]
  groups: tuple[pruning.Group, ...]
  schedule: pruning.Schedule

  def masks(self, params, sparsity, prev=None):
    if self.kind == 'filter':
      return pruning.filter_masks(params, sparsity, self.groups, self.layers,
                                  prev=prev)
    return pruning.magnitude_masks(params, sparsity, self.layers,
                                   scope=self.scope, prev=prev)

  def init(self, params):
    """Masks at step 0 (one-shot: the final sparsity; AGP: its s(0))."""
    return self.masks(params, pruning.target(self.schedule, 0))

  def update(self, params, masks, step):
    """Masks for ``step``: recomputed on the schedule's update steps."""
    return jax.lax.cond(
        pruning.update_now(self.schedule, step),
        lambda: self.masks(params, pruning.target(self.schedule, step),
                           prev=masks),
        lambda: masks)

  def metrics(self, masks, step, name: str) -> dict[str, jax.Array]:
    rep = pruning.layer_sparsity(masks, self.layers)
    out = {f'{name}/target': pruning.target(self.schedule, step),
           f'{name}/sparsity': rep.pop('all')}
    out.update({f'{name}/{k}': v for k, v in rep.items()})
    if self.kind == 'filter':
      # The fraction of pruned filters (the schedule's unit; the weight
      # sparsity above also counts the readers' dropped input channels).
      kept = [pruning.kept_channels(masks, g) for g in self.groups
              if g.producer in self.layers]
      out[f'{name}/filters'] = 1.0 - (sum(jnp.sum(k) for k in kept)
                                      / sum(k.size for k in kept))
    return out


def make_schedule(section, total_steps: int) -> pruning.Schedule:
  """``config.prune``'s schedule; the AGP window is given as fractions of
  the run (``agp_start``, ``agp_end``) with ``agp_updates`` mask updates."""
  start = int(round(section.agp_start * total_steps))
  end = max(start + 1, int(round(section.agp_end * total_steps)))
  every = max(1, math.ceil((end - start) / max(1, section.agp_updates)))
  return pruning.check_schedule(pruning.Schedule(
      kind=section.schedule, final=float(section.sparsity), start=start,
      end=end, every=every))


def make_pruner(section, module, variables, total_steps: int,
                kind: str | None = None, layers=None) -> Pruner:
  """The pruner of a network from ``config.prune``."""
  kind = kind or section.kind
  if kind not in pruning.KINDS:
    raise errors.UserError(f'config.prune.kind={kind!r}; expected one of '
                           f'{pruning.KINDS}')
  params = variables['params']
  layers = pruning.check_layers(params, section.layers if layers is None
                                else layers)
  groups = materialize.groups(module, variables) if kind == 'filter' else ()
  return Pruner(kind=kind, scope=section.scope, layers=layers, groups=groups,
                schedule=make_schedule(section, total_steps))


class Nets(NamedTuple):
  teacher: Any
  student: Any
  disc: Any


class Txs(NamedTuple):
  student: optax.GradientTransformation
  disc: optax.GradientTransformation | None


def make_txs(optim, total_steps: int, train_disc: bool) -> Txs:
  """Adam for the student (``optim.s``) and, if it trains, D (``optim.d``)."""
  return Txs(make_adam(**optim.s, total_steps=total_steps),
             make_adam(**optim.d, total_steps=total_steps)
             if train_disc else None)


def net_from(variables, tx) -> NetState:
  """A NetState starting from loaded variables (fresh optimizer)."""
  return NetState(params=variables['params'],
                  opt_state=tx.init(variables['params']),
                  batch_stats=variables.get('batch_stats'))


def frozen_net(variables) -> NetState:
  """A frozen network as a NetState (no optimizer) for the adversarial
  recipes' apply functions."""
  return NetState(params=variables['params'], opt_state=None,
                  batch_stats=variables.get('batch_stats'))


def init_masks(pruner: Pruner | None, net: NetState, tx):
  """(net masked at step 0 with a fresh optimizer, masks); no pruner: the
  net unchanged and None."""
  if pruner is None:
    return net, None
  # The loaded weights are constants of the jitted init: the barrier keeps
  # XLA from constant-folding the mask's sort (minutes for 100k weights).
  masks = pruner.init(jax.lax.optimization_barrier(net.params))
  params = pruning.apply_masks(net.params, masks)
  return net.replace(params=params, opt_state=tx.init(params)), masks


@flax.struct.dataclass
class State:
  step: jax.Array
  student: NetState
  masks: Any = None        # bool tree like student.params (None: scratch)
  disc: Any = None         # NetState when D trains
  disc_masks: Any = None   # recipe 'both'
  mi: Any = None


def prune_step(pruner: Pruner | None, net: NetState, masks, step):
  """(net with masked params, masks) at the start of a step."""
  if pruner is None:
    return net, masks
  masks = pruner.update(net.params, masks, step)
  return net.replace(params=pruning.apply_masks(net.params, masks)), masks


def remask(net: NetState, masks) -> NetState:
  """Re-applies the masks after an optimizer update."""
  if masks is None:
    return net
  return net.replace(params=pruning.apply_masks(net.params, masks))


def add_distill(loss, m, img, t_img, t_pos, *, recipe: Recipe, mi, mi_state,
                mi_aux):
  """``loss`` + ``recipe.distill`` * distance(img, t_img) + the MI student
  term (t+ = ``t_pos``), the terms recorded in ``m``; both tasks' G loss."""
  if recipe.distill > 0:
    m['distill'] = distance(recipe.distill_loss, img, t_img)
    loss = loss + recipe.distill * m['distill']
    if mi is not None:
      mi_term, m_s = mi.student_loss(mi_state, t_pos, img, mi_aux)
      loss = loss + mi_term
      m.update(m_s)
  return loss


def finish_step(state, student: NetState, masks, disc, d_masks, mi_state,
                metrics, *, tx, vjp, img, out_loss, batch_stats, pruners,
                recipe: Recipe):
  """The G update from ``out_loss`` pulled back through ``vjp``, re-masked;
  sparsity metrics; the new state. Shared by both tasks' train steps."""
  student, m_s = output_update(student, tx, vjp, img, out_loss,
                               batch_stats=batch_stats)
  student = remask(student, masks)
  metrics.update(prefix('s', m_s))
  g_pruner, d_pruner = pruners
  if g_pruner is not None:
    metrics.update(g_pruner.metrics(masks, state.step, 'prune'))
  if d_pruner is not None:
    metrics.update(d_pruner.metrics(d_masks, state.step, 'prune_d'))
  new = state.replace(step=state.step + 1, student=student, masks=masks,
                      disc=disc if recipe.train_disc else None,
                      disc_masks=d_masks, mi=mi_state)
  return new, metrics


def disc_spec(section) -> str:
  """The teacher D spec: ``teacher.disc_init``, or the ``disc`` of the run
  ``teacher.init`` names ('' when neither: a random D)."""
  if section.disc_init:
    return section.disc_init
  spec = section.init
  if not spec.startswith('run:'):
    return ''
  rest = spec[len('run:'):]
  for suffix in (':generator', ':student'):
    if rest.endswith(suffix):
      rest = rest[:-len(suffix)]
  return f'run:{rest}:disc'


def load_teacher(section, g_cls, random_g, random_d, seed: int):
  """(G module, G variables, D module, D variables) of the teacher.

  ``random_g(key)``/``random_d(key)`` build (module, variables) when
  ``teacher.init`` is '' (smoke runs and tests).
  """
  g_key, d_key = jax.random.split(jax.random.key(seed))
  loaded = teachers.load(section.init)
  if loaded is None:
    g, g_vars = random_g(g_key)
  else:
    g, g_vars = loaded
    if not isinstance(g, g_cls):
      raise errors.UserError(
          f'config.teacher.init={section.init!r} is a {type(g).__name__}; '
          f'this prune task needs a {g_cls.__name__}')
  d_loaded = teachers.load(disc_spec(section))
  d, d_vars = d_loaded if d_loaded is not None else random_d(d_key)
  return g, g_vars, d, d_vars


def teacher_img(module, frozen, x) -> jax.Array:
  """The frozen teacher's image for the input ``x`` (no gradient)."""
  (img, _), _ = apply_net(module, frozen['teacher']['params'],
                          frozen['teacher'].get('batch_stats'), x,
                          train=False)
  return jax.lax.stop_gradient(img)


def student_network(module, state, pruner: Pruner | None,
                    input_shape) -> Network:
  """The student as ``finalize`` hands it on: masks applied, and a
  filter-pruned generator materialized into a smaller dense module."""
  var = variables_of(state.student)
  if pruner is not None:
    var = {**var, 'params': pruning.apply_masks(var['params'], state.masks)}
    if pruner.kind == 'filter':
      module, var = materialize.materialize(module, jax.device_get(var),
                                            jax.device_get(state.masks))
  return Network(module, var, input_shape, section='student')


def predicts(student, teacher, key: str) -> dict:
  """``predict`` of both prune tasks: the student's and the frozen
  teacher's images for ``batch[key]``."""

  def student_fwd(state, batch, frozen):
    del frozen
    (img, _), _ = apply_net(student, state.student.params,
                            state.student.batch_stats, batch[key],
                            train=False)
    return img

  def teacher_fwd(state, batch, frozen):
    del state
    return teacher_img(teacher, frozen, batch[key])

  return {'teacher': teacher_fwd, 'student': student_fwd}

"""The pluggable mutual-information add-on: VEM (energy model), VID, CRD.

A distillation method maximizes a variational lower bound of I(T; S) between
a positive teacher-side image t+ (teacher output, or the real target on
paired data) and the student output s, without knowing which bound is used:

  mi = make_mi(kind, lambda_mi=..., t_shape=..., s_shape=..., ...)
  mi_state = mi.init(key)                                    # in the state
  mi_state, aux, m = mi.update(mi_state, t_pos, sg(s), key)   # train critic
  term, m_s = mi.student_loss(mi_state, t_pos, s, aux)        # add to L_s

``update`` trains the critic on the detached student output; the
``student_loss`` term sees the critic frozen, so its gradient only reaches
``s``. All functions are pure and jit-friendly; the state is a pytree.

Kinds:
  * ``'none'``: no add-on (empty state, zero term).
  * ``'vem'`` (Kang et al. 2022): q(t|s) ∝ exp(-E(t, s)) with the
    authors' ``VEMEnergyNet`` (``ebm_arch='compact'``: gcjax's earlier
    ``EnergyNet``). Negatives t~ come from K Langevin steps started at s
    (eq. 7 with separate step size eta and noise sigma), clipped to the data
    range once at the end as in the authors' code; the EBM minimizes
    mean E(t+, s) - mean E(t~, s) + alpha (mean E(t+, s)^2 + mean E(t~, s)^2)
    with Adam (lr 1e-4, betas (0, 0.999)); the student term is
    lambda_mi [mean E(t+, s) - mean E(sg(t~), s)] (eq. 9), reusing the
    Langevin samples of the update (no second chain).
  * ``'vid'`` (Ahn et al. 2019): q(t|s) = N(mu(s), diag(var)) with a small
    conv mean network and a per-channel variance softplus(rho) + eps; the
    critic and the student term are the Gaussian NLL of t+ (per element,
    including the 0.5 log 2 pi constant).
  * ``'crd'`` (Tian et al. 2020, InfoNCE form): small conv projection heads
    embed t+ and s to unit vectors; the loss is the cross-entropy of picking
    the matching teacher embedding among the in-batch teacher embeddings and
    a FIFO queue of past teacher embeddings (kept in the state), at
    temperature 0.07.

Defaults follow the VEM paper: K = 10, eta = 100 (use 50 for Cityscapes and
FFHQ), sigma = 0.005, lambda_mi = 0.2 (best in its Table 5, Cityscapes);
alpha = 0.05 is the authors' scripts' ``l2_coeff`` (not in the main text).

VEM diagnostics (train-step metrics): ``ebm/e_pos``, ``ebm/e_neg``,
``ebm/gap`` (= e_neg - e_pos), ``ebm/move_noise_ratio`` (the mean Langevin
gradient move per step over the noise per step sigma * sqrt(D), D the
per-example size of t: << 1 means the chain is noise, >> 1 a descent).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gcjax import state as base
from gcjax.langevin import langevin
from gcjax.models.energy import PairEnergy, energy_net

PyTree = Any
KINDS = ('none', 'vem', 'vid', 'crd')
sg = jax.lax.stop_gradient


class MI(NamedTuple):
  """The MI add-on as pure functions (closed over static modules/optax).

  Attributes:
    kind: 'none' | 'vem' | 'vid' | 'crd'.
    init: ``init(key) -> mi_state`` pytree.
    update: ``update(mi_state, t_pos, s, key) -> (mi_state, aux, metrics)``;
      trains the critic one step (``s`` is stop-gradient'ed inside).
    student_loss: ``student_loss(mi_state, t_pos, s, aux) -> (loss,
      metrics)``; scalar term for the student loss, already multiplied by
      ``lambda_mi``; gradient only through ``s``.
    critic: VEM only: ``critic(mi_state) -> (module, variables)``, the
      energy net as a ``models.energy.PairEnergy`` (for evaluation probes).
  """
  kind: str
  init: Callable[[jax.Array], PyTree]
  update: Callable[..., tuple[PyTree, PyTree, dict[str, jax.Array]]]
  student_loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
  critic: Callable[[PyTree], tuple[Any, PyTree]] | None = None


# --------------------------------------------------------------------------
# Pure losses (also used directly by tests on toy problems).


def ebm_loss(e_pos: jax.Array, e_neg: jax.Array, alpha: float) -> jax.Array:
  """VEM/EBM critic loss from energies [B] of positives and negatives."""
  return (jnp.mean(e_pos) - jnp.mean(e_neg)
          + alpha * (jnp.mean(jnp.square(e_pos)) + jnp.mean(jnp.square(e_neg))))


def gaussian_nll(t: jax.Array, mu: jax.Array, var: jax.Array) -> jax.Array:
  """Mean per-element NLL of t under N(mu, var) (var broadcasts)."""
  return jnp.mean(0.5 * (jnp.log(2.0 * np.pi * var)
                         + jnp.square(t - mu) / var))


def info_nce(z_s: jax.Array, z_t: jax.Array, memory: jax.Array | None,
             temperature: float) -> jax.Array:
  """InfoNCE: each student embedding must pick its own teacher embedding.

  Args:
    z_s: [B, D] float32 unit-norm student embeddings (anchors).
    z_t: [B, D] float32 unit-norm teacher embeddings; row i is the positive
      of anchor i, the other rows are in-batch negatives.
    memory: [M, D] float32 unit-norm extra negatives, or None.
    temperature: softmax temperature.

  Returns:
    Scalar float32 cross-entropy (log(B + M) for uninformative embeddings).
  """
  cands = z_t if memory is None else jnp.concatenate([z_t, memory], axis=0)
  logits = z_s @ cands.T / temperature
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.diagonal(logp[:, :z_s.shape[0]]))


def _l2n(x: jax.Array) -> jax.Array:
  return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + 1e-12)


# --------------------------------------------------------------------------
# Small critic networks for VID and CRD.


class VIDMean(nn.Module):
  """mu(s): conv3x3 -> relu -> conv3x3 -> relu -> conv1x1 to C_t."""
  out_ch: int
  hidden: int = 32

  @nn.compact
  def __call__(self, s: jax.Array, train: bool = False):
    del train
    h = nn.relu(nn.Conv(self.hidden, (3, 3))(s))
    h = nn.relu(nn.Conv(self.hidden, (3, 3))(h))
    return nn.Conv(self.out_ch, (1, 1))(h), {}


class VID(nn.Module):
  """The VID variational family: mean net + per-channel variance."""
  out_ch: int
  hidden: int = 32
  init_var: float = 1.0
  eps: float = 1e-5

  @nn.compact
  def __call__(self, s: jax.Array, train: bool = False):
    mu, _ = VIDMean(self.out_ch, self.hidden, name='mean')(s, train)
    # softplus(rho) + eps = init_var at initialization.
    rho0 = float(np.log(np.expm1(self.init_var - self.eps)))
    rho = self.param('rho', nn.initializers.constant(rho0), (self.out_ch,))
    var = jax.nn.softplus(rho) + self.eps
    return (mu, var), {}


class Embed(nn.Module):
  """CRD projection head: two stride-2 convs -> global mean -> Dense -> l2."""
  dim: int = 128
  hidden: int = 32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    del train
    h = nn.relu(nn.Conv(self.hidden, (3, 3), strides=(2, 2))(x))
    h = nn.relu(nn.Conv(self.hidden, (3, 3), strides=(2, 2))(h))
    h = jnp.mean(h, axis=(1, 2))
    return _l2n(nn.Dense(self.dim)(h)), {}


class CRDHeads(nn.Module):
  """Separate projection heads for teacher-side and student images."""
  dim: int = 128
  hidden: int = 32

  def setup(self):
    self.embed_t = Embed(self.dim, self.hidden)
    self.embed_s = Embed(self.dim, self.hidden)

  def __call__(self, t: jax.Array, s: jax.Array, train: bool = False):
    return (self.embed_t(t, train)[0], self.embed_s(s, train)[0]), {}


# --------------------------------------------------------------------------
# The add-on.


def _none() -> MI:
  return MI(kind='none',
            init=lambda key: {},
            update=lambda state, t_pos, s, key: (state, {}, {}),
            student_loss=lambda state, t_pos, s, aux: (jnp.zeros(()), {}))


def _check_shapes(name, t_pos, s, t_shape, s_shape):
  if tuple(t_pos.shape[1:]) != tuple(t_shape) or (
      tuple(s.shape[1:]) != tuple(s_shape)) or t_pos.shape[0] != s.shape[0]:
    raise ValueError(f'mi.{name}: expected t_pos [B, {t_shape}] and s '
                     f'[B, {s_shape}], got {t_pos.shape} and {s.shape}')


def _vem(lambda_mi, tx, t_shape, s_shape, *, ebm_arch, ebm_ch, ebm_blocks,
         ebm_pool, ebm_spectral_norm, n_steps, step_size, noise_std, alpha,
         clip, clip_at, grad_clip) -> MI:
  net = energy_net(ebm_arch, ch=ebm_ch, n_blocks=ebm_blocks, pool=ebm_pool,
                   spectral_norm=ebm_spectral_norm)
  noise_per_step = noise_std * float(np.sqrt(np.prod(t_shape)))

  def init(key):
    return base.create_net_state(net, tx, key, jnp.zeros((1, *t_shape)),
                            jnp.zeros((1, *s_shape)), train=False)

  def energy(variables, t, s):
    return net.apply(variables, t, s, train=False)[0]

  def update(state, t_pos, s, key):
    _check_shapes('update', t_pos, s, t_shape, s_shape)
    t_pos, s = sg(t_pos), sg(s)
    frozen = base.variables_of(state)
    t_neg, lstats = langevin(lambda t: energy(frozen, t, s), s, key,
                             n_steps=n_steps, step_size=step_size,
                             noise_std=noise_std, clip=clip,
                             grad_clip=grad_clip, clip_at=clip_at)
    b = t_pos.shape[0]
    t_both = jnp.concatenate([t_pos, t_neg], axis=0)
    s_both = jnp.concatenate([s, s], axis=0)

    def loss_fn(params):
      v = {**frozen, 'params': params}
      if state.batch_stats is None:
        (e, _), bs = net.apply(v, t_both, s_both, train=True), None
      else:
        (e, _), upd = net.apply(v, t_both, s_both, train=True,
                                mutable=['batch_stats'])
        bs = upd['batch_stats']
      e_pos, e_neg = e[:b], e[b:]
      return ebm_loss(e_pos, e_neg, alpha), (e_pos, e_neg, bs)

    (loss, (e_pos, e_neg, bs)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    new = base.apply_gradients(state, grads, tx, batch_stats=bs)
    metrics = {
        'ebm/e_pos': jnp.mean(e_pos), 'ebm/e_neg': jnp.mean(e_neg),
        'ebm/gap': jnp.mean(e_neg) - jnp.mean(e_pos), 'ebm/loss': loss,
        'ebm/step_norm': lstats['step_norm'],
        'ebm/move_noise_ratio': lstats['step_norm'] / max(noise_per_step,
                                                          1e-12),
        'ebm/langevin_grad_norm': lstats['grad_norm'],
        'ebm/grad_norm': base.global_norm(grads)}
    return new, {'t_neg': t_neg}, metrics

  def student_loss(state, t_pos, s, aux):
    _check_shapes('student_loss', t_pos, s, t_shape, s_shape)
    frozen = sg(base.variables_of(state))
    b = s.shape[0]
    e = energy(frozen, jnp.concatenate([sg(t_pos), sg(aux['t_neg'])], 0),
               jnp.concatenate([s, s], 0))
    term = lambda_mi * (jnp.mean(e[:b]) - jnp.mean(e[b:]))
    return term, {'mi/student_term': term}

  def critic(state):
    module = PairEnergy(net, t_channels=t_shape[-1], n_steps=n_steps,
                        step_size=float(step_size),
                        noise_std=float(noise_std), clip=clip,
                        clip_at=clip_at)
    variables = {'params': {'energy': state.params}}
    if state.batch_stats is not None:
      variables['batch_stats'] = {'energy': state.batch_stats}
    return module, variables

  return MI('vem', init, update, student_loss, critic)


def _vid(lambda_mi, tx, t_shape, s_shape, *, vid_hidden, vid_init_var) -> MI:
  net = VID(out_ch=t_shape[-1], hidden=vid_hidden, init_var=vid_init_var)

  def nll(params, t_pos, s):
    (mu, var), _ = net.apply({'params': params}, s)
    if mu.shape != t_pos.shape:
      raise ValueError(f'mi vid: mean net output {mu.shape} does not match '
                       f't_pos {t_pos.shape} (t and s must share H, W)')
    return gaussian_nll(t_pos, mu, var), var

  def init(key):
    return base.create_net_state(net, tx, key, jnp.zeros((1, *s_shape)))

  def update(state, t_pos, s, key):
    del key
    _check_shapes('update', t_pos, s, t_shape, s_shape)
    (loss, var), grads = jax.value_and_grad(nll, has_aux=True)(
        state.params, sg(t_pos), sg(s))
    new = base.apply_gradients(state, grads, tx)
    return new, {}, {'vid/nll': loss, 'vid/var_mean': jnp.mean(var),
                     'vid/grad_norm': base.global_norm(grads)}

  def student_loss(state, t_pos, s, aux):
    del aux
    _check_shapes('student_loss', t_pos, s, t_shape, s_shape)
    loss, _ = nll(sg(state.params), sg(t_pos), s)
    term = lambda_mi * loss
    return term, {'mi/student_term': term}

  return MI('vid', init, update, student_loss)


def _crd(lambda_mi, tx, t_shape, s_shape, *, crd_dim, crd_hidden, crd_queue,
         crd_temperature) -> MI:
  heads = CRDHeads(dim=crd_dim, hidden=crd_hidden)

  def init(key):
    net_key, mem_key = jax.random.split(key)
    net = base.create_net_state(heads, tx, net_key, jnp.zeros((1, *t_shape)),
                           jnp.zeros((1, *s_shape)))
    queue = _l2n(jax.random.normal(mem_key, (crd_queue, crd_dim)))
    return {'net': net, 'queue': queue, 'ptr': jnp.zeros((), jnp.int32)}

  def nce(params, t_pos, s, queue):
    (z_t, z_s), _ = heads.apply({'params': params}, t_pos, s)
    memory = sg(queue) if crd_queue > 0 else None
    return info_nce(z_s, z_t, memory, crd_temperature), z_t

  def update(state, t_pos, s, key):
    del key
    _check_shapes('update', t_pos, s, t_shape, s_shape)
    b = t_pos.shape[0]
    (loss, z_t), grads = jax.value_and_grad(nce, has_aux=True)(
        state['net'].params, sg(t_pos), sg(s), state['queue'])
    net = base.apply_gradients(state['net'], grads, tx)
    queue, ptr = state['queue'], state['ptr']
    if crd_queue > 0:
      idx = (ptr + jnp.arange(b)) % crd_queue
      queue = queue.at[idx].set(sg(z_t)[:crd_queue])
      ptr = (ptr + b) % crd_queue
    # aux keeps the queue *before* this batch was enqueued, so the student
    # term does not meet its own positives again among the negatives.
    return ({'net': net, 'queue': queue, 'ptr': ptr},
            {'queue': state['queue']},
            {'crd/nce': loss, 'crd/grad_norm': base.global_norm(grads)})

  def student_loss(state, t_pos, s, aux):
    _check_shapes('student_loss', t_pos, s, t_shape, s_shape)
    queue = aux['queue'] if aux else state['queue']
    loss, _ = nce(sg(state['net'].params), sg(t_pos), s, queue)
    term = lambda_mi * loss
    return term, {'mi/student_term': term}

  return MI('crd', init, update, student_loss)


def make_mi(kind: str, *, t_shape: tuple[int, ...], s_shape: tuple[int, ...],
            lambda_mi: float = 0.2,
            lr: float = 1e-4, b1: float = 0.0, b2: float = 0.999,
            total_steps: int = 1, decay: str = 'none',
            # VEM
            ebm_arch: str = 'vem', ebm_ch: int = 64, ebm_blocks: int = 7,
            ebm_pool: int = 2, ebm_spectral_norm: bool = True,
            n_steps: int = 10, step_size: float = 100.0,
            noise_std: float = 0.005, alpha: float = 0.05,
            clip: tuple[float, float] | None = (-1.0, 1.0),
            clip_at: str = 'end',
            grad_clip: float | None = None,
            # VID
            vid_hidden: int = 32, vid_init_var: float = 1.0,
            # CRD
            crd_dim: int = 128, crd_hidden: int = 32, crd_queue: int = 4096,
            crd_temperature: float = 0.07) -> MI:
  """Builds the MI add-on.

  Args:
    kind: 'none' | 'vem' | 'vid' | 'crd'.
    t_shape: per-example [H, W, C] of the positive t+.
    s_shape: per-example [H, W, C'] of the student output (same H, W).
    lambda_mi: weight of the student term (the paper's lambda_MI).
    lr, b1, b2: Adam for the critic (VEM paper: 1e-4, (0, 0.999)).
    total_steps, decay: learning-rate schedule (see ``make_adam``).
    ebm_arch: 'vem' (the authors' ``VEMEnergyNet``) or 'compact'
      (``EnergyNet``).
    ebm_ch, ebm_blocks: base width C0 and block count (for 'compact': its
      width and most blocks).
    ebm_pool, ebm_spectral_norm: 'compact' only (``EnergyNet`` fields).
    n_steps, step_size, noise_std: Langevin K, eta, sigma.
    alpha: weight of the energy-magnitude regularizer in the EBM loss.
    clip: data range for the Langevin chain (None: no clipping).
    clip_at: 'end' (clip once after the last step, the authors' code) or
      'step' (after every step).
    grad_clip: per-example Langevin gradient-norm clip (None or <= 0: off,
      so a config can say 0).
    vid_hidden: width of VID's mean network.
    vid_init_var: VID's initial per-channel variance.
    crd_dim, crd_hidden: CRD embedding size and head width.
    crd_queue: number of past teacher embeddings kept as negatives (0: only
      in-batch negatives).
    crd_temperature: InfoNCE temperature.

  Returns:
    An ``MI`` record of pure functions.
  """
  if kind not in KINDS:
    raise ValueError(f'mi kind must be one of {KINDS}, got {kind!r}')
  if kind == 'none':
    return _none()
  t_shape, s_shape = tuple(t_shape), tuple(s_shape)
  if len(t_shape) != 3 or len(s_shape) != 3 or t_shape[:2] != s_shape[:2]:
    raise ValueError(f'mi: t_shape and s_shape must be [H, W, C] with equal '
                     f'H, W; got {t_shape} and {s_shape}')
  tx = base.make_adam(lr, b1, b2, total_steps, decay=decay)
  if kind == 'vem':
    if clip is not None:
      clip = (float(clip[0]), float(clip[1]))
    if grad_clip is not None and grad_clip <= 0:
      grad_clip = None
    if ebm_arch not in ('vem', 'compact'):
      raise ValueError(f"mi: ebm_arch must be 'vem' or 'compact', got "
                       f'{ebm_arch!r}')
    if clip_at not in ('step', 'end'):
      raise ValueError(f"mi: clip_at must be 'step' or 'end', got "
                       f'{clip_at!r}')
    return _vem(lambda_mi, tx, t_shape, s_shape, ebm_arch=ebm_arch,
                ebm_ch=ebm_ch, ebm_blocks=ebm_blocks, ebm_pool=ebm_pool,
                ebm_spectral_norm=ebm_spectral_norm, n_steps=int(n_steps),
                step_size=step_size, noise_std=noise_std, alpha=alpha,
                clip=clip, clip_at=clip_at, grad_clip=grad_clip)
  if kind == 'vid':
    return _vid(lambda_mi, tx, t_shape, s_shape, vid_hidden=vid_hidden,
                vid_init_var=vid_init_var)
  return _crd(lambda_mi, tx, t_shape, s_shape, crd_dim=crd_dim,
              crd_hidden=crd_hidden, crd_queue=crd_queue,
              crd_temperature=crd_temperature)


# Config keys that are not ``make_mi`` arguments (read by the method).
METHOD_KEYS = ('positive',)


def make_mi_from_config(cfg, *, t_shape, s_shape, total_steps: int) -> MI:
  """``make_mi(**cfg)`` for a config section (ConfigDict or dict).

  The section holds ``kind`` and any ``make_mi`` keyword; keys in
  ``METHOD_KEYS`` (e.g. ``positive``) are skipped; ``total_steps`` comes from
  the run.
  """
  d = dict(cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg)
  for k in METHOD_KEYS:
    d.pop(k, None)
  kind = d.pop('kind', None)
  if kind is None:
    raise ValueError('config.mi.kind is missing (none | vem | vid | crd)')
  allowed = set(inspect.signature(make_mi).parameters) - {
      'kind', 't_shape', 's_shape', 'total_steps'}
  unknown = sorted(set(d) - allowed)
  if unknown:
    raise ValueError(f'config.mi: unknown keys {unknown}; allowed: '
                     f'{sorted(allowed | set(METHOD_KEYS) | {"kind"})}')
  if d.get('clip') is not None:
    d['clip'] = tuple(d['clip'])
  return make_mi(kind, t_shape=t_shape, s_shape=s_shape,
                 total_steps=total_steps, **d)

"""GAN flavour `dcgan`: train an unconditional DCGAN by depth scale d.

The recipe of Aguinaldo et al. (2019)'s teachers: a DCGAN generator and
discriminator (``gcjax.models.dcgan``) trained with either the
non-saturating GAN loss (``loss.adversarial='vanilla'``, as on their
Celeb-A) or WGAN-GP (``'wgan-gp'``: Wasserstein critic + ``gp_weight`` *
gradient penalty, ``n_critic`` critic updates per generator update).

One train step = ``n_critic`` discriminator updates and one generator
update. The real batch is cut into ``n_critic`` equal chunks, one per critic
update, so ``data.batch_size`` = ``n_critic`` x the per-update batch and
every real image is seen once. Each critic update draws its own z; the last
one shares its generator forward with the generator update (its VJP is
reused), as in the PyTorch DCGAN tutorial.

The helpers (``gen_apply``, ``critic_update``, ``gen_adv_loss``) are shared
with method ``kd``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

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
from gcjax.objectives import adversarial

ADVERSARIAL = ('vanilla', 'wgan-gp')
IMAGE_KEY = 'img'


class Adversarial(NamedTuple):
  """The adversarial recipe: ``kind`` in ADVERSARIAL, GP weight, n_critic."""
  kind: str = 'vanilla'
  gp_weight: float = 10.0
  n_critic: int = 1


def check_adversarial(adv: Adversarial, disc_norm: str) -> None:
  """Raises ValueError on an unknown kind, bad n_critic or a BN critic."""
  if adv.kind not in ADVERSARIAL:
    raise ValueError(f'config.loss.adversarial={adv.kind!r}; expected one of '
                     f'{ADVERSARIAL}')
  if adv.n_critic < 1:
    raise ValueError(f'config.loss.n_critic must be >= 1, got {adv.n_critic}')
  if adv.kind == 'wgan-gp' and disc_norm == 'batch':
    raise ValueError("WGAN-GP's gradient penalty is per example: set "
                     "config.disc.norm to 'layer' or 'none', not 'batch'")


@flax.struct.dataclass
class State:
  step: jax.Array
  gen: NetState
  disc: NetState


class Nets(NamedTuple):
  gen: dcgan.DCGANGenerator
  disc: dcgan.DCGANDiscriminator


class Txs(NamedTuple):
  gen: optax.GradientTransformation
  disc: optax.GradientTransformation


def _vars(params, batch_stats):
  v = {'params': params}
  if batch_stats is not None:
    v['batch_stats'] = batch_stats
  return v


def gen_apply(module, params, batch_stats, z: jax.Array, train: bool):
  """Generator forward.

  Args:
    module: a DCGANGenerator.
    params, batch_stats: its variables (batch_stats may be None).
    z: [B, nz] float32 latents.
    train: batch statistics on (and returned updated).

  Returns:
    ((images [B, R, R, C] in [-1, 1], feats), new batch_stats).
  """
  v = _vars(params, batch_stats)
  if train and batch_stats is not None:
    out, upd = module.apply(v, z, train=True, mutable=['batch_stats'])
    return out, upd['batch_stats']
  return module.apply(v, z, train=train), batch_stats


def disc_apply(module, params, batch_stats, x: jax.Array):
  """Discriminator forward in train mode: (logits [B, 1], new batch_stats)."""
  (logits, _), bs = gen_apply(module, params, batch_stats, x, train=True)
  return logits, bs


def critic_update(disc: NetState, module, tx, real: jax.Array,
                  fake: jax.Array, key: jax.Array, adv: Adversarial):
  """One discriminator/critic update on real vs stop-gradient(fake) images.

  Args:
    disc: the discriminator's NetState.
    module: its DCGANDiscriminator.
    tx: its optimizer.
    real: [B, R, R, C] float32 in [-1, 1].
    fake: [B, R, R, C] float32 (gradients are stopped here).
    key: PRNG key for the gradient penalty's interpolation weights.
    adv: the adversarial recipe.

  Returns:
    (new NetState, metrics: loss, real, fake (mean logits), gp, grad_norm).
  """
  fake = jax.lax.stop_gradient(fake)
  d_kind = 'wgan' if adv.kind == 'wgan-gp' else adv.kind

  def loss_fn(params):
    real_logits, bs = disc_apply(module, params, disc.batch_stats, real)
    fake_logits, bs = disc_apply(module, params, bs, fake)
    loss = adversarial.gan_d_loss(real_logits, fake_logits, d_kind)
    m = {'real': jnp.mean(real_logits), 'fake': jnp.mean(fake_logits)}
    if adv.kind == 'wgan-gp':
      gp = adversarial.gradient_penalty(
          lambda x: disc_apply(module, params, bs, x)[0], real, fake, key)
      loss = loss + adv.gp_weight * gp
      m['gp'] = gp
    m['loss'] = loss
    return loss, (bs, m)

  (_, (bs, m)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      disc.params)
  m['grad_norm'] = global_norm(grads)
  return apply_gradients(disc, grads, tx, batch_stats=bs), m


def gen_adv_loss(module, disc: NetState, fake: jax.Array,
                 adv: Adversarial) -> jax.Array:
  """The generator's adversarial loss against ``disc`` (train-mode D)."""
  logits, _ = disc_apply(module, disc.params, disc.batch_stats, fake)
  return adversarial.gan_g_loss(
      logits, 'wgan' if adv.kind == 'wgan-gp' else adv.kind)


def chunks(x: jax.Array, n: int) -> list[jax.Array]:
  """[n * b, ...] -> n arrays [b, ...] (raises if not divisible)."""
  if x.shape[0] % n:
    raise ValueError(f'batch of {x.shape[0]} is not divisible by '
                     f'config.loss.n_critic={n}')
  return list(x.reshape(n, x.shape[0] // n, *x.shape[1:]))


def fixed_latents(batch, nz: int) -> jax.Array:
  """``batch['z']`` or, if absent (sample grids), a fixed seed-0 batch."""
  if 'z' in batch:
    return batch['z']
  n = next(iter(batch.values())).shape[0]
  return jax.random.normal(jax.random.key(0), (n, nz))


def create_state(key, *, nets: Nets, txs: Txs, image_shape) -> State:
  g_key, d_key = jax.random.split(key)
  gen = create_net_state(nets.gen, txs.gen, g_key,
                         jnp.zeros((1, nets.gen.nz)))
  disc = create_net_state(nets.disc, txs.disc, d_key,
                          jnp.zeros((1, *image_shape)))
  return State(step=jnp.zeros((), jnp.int32), gen=gen, disc=disc)


def train_step(state: State, batch, key, frozen, *, nets: Nets, txs: Txs,
               adv: Adversarial):
  """``n_critic`` critic updates then one generator update."""
  del frozen
  key = jax.random.fold_in(key, state.step)
  keys = jax.random.split(key, 2 * adv.n_critic)
  z_keys, gp_keys = keys[:adv.n_critic], keys[adv.n_critic:]
  reals = chunks(batch[IMAGE_KEY], adv.n_critic)
  b, nz = reals[0].shape[0], nets.gen.nz
  disc = state.disc
  m_d = {}
  for i in range(adv.n_critic - 1):
    (fake, _), _ = gen_apply(nets.gen, state.gen.params,
                             state.gen.batch_stats,
                             jax.random.normal(z_keys[i], (b, nz)), True)
    disc, m_d = critic_update(disc, nets.disc, txs.disc, reals[i], fake,
                              gp_keys[i], adv)

  z = jax.random.normal(z_keys[-1], (b, nz))

  def g_fwd(params):
    (img, _), bs = gen_apply(nets.gen, params, state.gen.batch_stats, z,
                             True)
    return img, bs

  fake, g_vjp, g_bs = jax.vjp(g_fwd, state.gen.params, has_aux=True)
  disc, m_d = critic_update(disc, nets.disc, txs.disc, reals[-1], fake,
                            gp_keys[-1], adv)
  g_loss, d_img = jax.value_and_grad(
      lambda x: gen_adv_loss(nets.disc, disc, x, adv))(fake)
  grads, = g_vjp(d_img)
  gen = apply_gradients(state.gen, grads, txs.gen, batch_stats=g_bs)
  m_g = {'loss': g_loss, 'grad_norm': global_norm(grads)}
  new = state.replace(step=state.step + 1, gen=gen, disc=disc)
  return new, {**prefix('g', m_g), **prefix('d', m_d)}


def generator_fwd(state: State, batch, frozen, *, nets: Nets):
  """Images [B, R, R, C] in [-1, 1] from ``batch['z']`` (eval mode)."""
  del frozen
  (img, _), _ = gen_apply(nets.gen, state.gen.params, state.gen.batch_stats,
                          fixed_latents(batch, nets.gen.nz), False)
  return img


def generator_cost(module) -> CostModel:
  return CostModel(
      fwd=lambda v, z: module.apply(v, z, train=False)[0],
      variables=lambda s, f: variables_of(s.gen),
      input_shape=(module.nz,))


def make(config, sample_batch) -> Method:
  """Builds flavour ``dcgan`` from config.generator/disc/loss/optim.

  The image size and channels come from ``sample_batch['img']``.
  """
  if IMAGE_KEY not in sample_batch:
    raise ValueError(f'gan flavour dcgan needs {IMAGE_KEY!r} images in the '
                     f'batch (e.g. data name "fashion"); got keys '
                     f'{sorted(sample_batch)}')
  shape = tuple(sample_batch[IMAGE_KEY].shape[1:])
  g, d, lc = config.generator, config.disc, config.loss
  adv = Adversarial(kind=lc.adversarial, gp_weight=lc.gp_weight,
                    n_critic=lc.n_critic)
  check_adversarial(adv, d.norm)
  nets = Nets(
      gen=dcgan.DCGANGenerator(d=g.d, nz=g.nz, out_ch=shape[-1],
                               resolution=shape[0], norm=g.norm),
      disc=dcgan.DCGANDiscriminator(d=d.d, resolution=shape[0],
                                    norm=d.norm))
  o = config.optim
  txs = Txs(gen=make_adam(**o.g, total_steps=config.total_steps),
            disc=make_adam(**o.d, total_steps=config.total_steps))
  return Method(
      init=partial(create_state, nets=nets, txs=txs, image_shape=shape),
      train_step=partial(train_step, nets=nets, txs=txs, adv=adv),
      predict={'generator': partial(generator_fwd, nets=nets)},
      sample_rows=('generator',),
      cost_models={'generator': generator_cost(nets.gen)},
      target_key=IMAGE_KEY, reference=None, latent_dim=g.nz)

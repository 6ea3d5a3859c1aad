"""The CycleGAN update (Zhu et al. 2017, its public code), shared by the
``gan`` method's cyclegan flavour and OMGD's online CycleGAN teacher.

Generators G_A: A -> B and G_B: B -> A, discriminators D_A (judges domain B)
and D_B (judges A), LSGAN losses, cycle-consistency L1 weighted ``lambda_a``
/ ``lambda_b`` and identity L1 weighted ``lambda_identity`` times those, and
image pools of past fakes that the discriminators see instead of the newest
fakes. Each step updates both generators first (discriminators fixed), then
both discriminators on pooled fakes; D losses are halved.

The pools are arrays in the state (``Pool``), refreshed with explicit PRNG
keys, so a run is deterministic and resumable.
"""

from __future__ import annotations

from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from gcjax import errors
from gcjax.objectives import adversarial
from gcjax.recipes import adversarial as adv_lib
from gcjax.recipes import nets as nets_lib
from gcjax.state import (
  NetState,
  apply_gradients,
  apply_net,
  create_net_state,
  global_norm,
  make_adam,
  prefix,
)

sg = jax.lax.stop_gradient


# --------------------------------------------------------------------------
# Image pool of past fakes.


@flax.struct.dataclass
class Pool:
  """Past generated images: ``images`` [size, H, W, C], ``count`` filled."""
  images: jax.Array
  count: jax.Array


def pool_init(size: int, shape: tuple[int, ...]) -> Pool:
  """An empty pool of ``size`` images of per-image ``shape`` [H, W, C]."""
  if size < 0:
    raise errors.UserError(f'pool size must be >= 0, got {size}')
  return Pool(images=jnp.zeros((size, *shape), jnp.float32),
              count=jnp.zeros((), jnp.int32))


def pool_query(pool: Pool, images: jax.Array, key: jax.Array
               ) -> tuple[Pool, jax.Array]:
  """CycleGAN's ``ImagePool.query``, one image at a time.

  While the pool is not full each image is stored and returned. Once full,
  with probability 1/2 an image replaces a uniformly chosen stored one and
  the stored one is returned; otherwise the image itself is returned.

  Args:
    pool: the pool (size 0: ``images`` are returned unchanged).
    images: [B, H, W, C] float32 new fakes (gradients are stopped).
    key: PRNG key.

  Returns:
    (new pool, [B, H, W, C] images for the discriminator).
  """
  size = pool.images.shape[0]
  images = sg(images)
  if size == 0:
    return pool, images
  if images.shape[1:] != pool.images.shape[1:]:
    raise ValueError(f'pool_query: pool holds {pool.images.shape[1:]} '
                     f'images, got {images.shape[1:]}')

  def one(carry, xs):
    stored, count = carry
    img, k = xs
    u_key, i_key = jax.random.split(k)
    filling = count < size
    swap = jax.random.uniform(u_key) > 0.5
    idx = jnp.where(filling, count, jax.random.randint(i_key, (), 0, size))
    old = stored[idx]
    stored = stored.at[idx].set(jnp.where(filling | swap, img, old))
    out = jnp.where(filling | ~swap, img, old)
    return (stored, count + filling.astype(jnp.int32)), out

  keys = jax.random.split(key, images.shape[0])
  (stored, count), out = jax.lax.scan(one, (pool.images, pool.count),
                                      (images, keys))
  return Pool(images=stored, count=count), out


# --------------------------------------------------------------------------
# The CycleGAN update.


@flax.struct.dataclass
class CycleState:
  """The four networks and two pools; ``pool_b`` holds past G_A(a)."""
  g_a: NetState
  g_b: NetState
  d_a: NetState
  d_b: NetState
  pool_a: Pool
  pool_b: Pool


class CycleNets(NamedTuple):
  g_a: object
  g_b: object
  d_a: object
  d_b: object


class CycleTxs(NamedTuple):
  g: optax.GradientTransformation
  d: optax.GradientTransformation


class CycleWeights(NamedTuple):
  adversarial: str = 'lsgan'
  lambda_a: float = 10.0
  lambda_b: float = 10.0
  lambda_identity: float = 0.5


def create_cycle_state(key: jax.Array, a_shape, b_shape, *, nets: CycleNets,
                       txs: CycleTxs, pool_size: int) -> CycleState:
  """Initializes the networks (inputs [1, *a_shape] / [1, *b_shape])."""
  ka, kb, kda, kdb = jax.random.split(key, 4)
  a = jnp.zeros((1, *a_shape), jnp.float32)
  b = jnp.zeros((1, *b_shape), jnp.float32)
  return CycleState(
      g_a=create_net_state(nets.g_a, txs.g, {'params': ka, 'dropout': ka}, a),
      g_b=create_net_state(nets.g_b, txs.g, {'params': kb, 'dropout': kb}, b),
      d_a=create_net_state(nets.d_a, txs.d, kda, b),
      d_b=create_net_state(nets.d_b, txs.d, kdb, a),
      pool_a=pool_init(pool_size, a_shape),
      pool_b=pool_init(pool_size, b_shape))


def generator_losses(rec_a, rec_b, idt_a, idt_b, logits_a, logits_b, a, b,
                     w: CycleWeights):
  """CycleGAN generator objective from the images it is made of.

  Args:
    rec_a, rec_b: G_B(G_A(a)) and G_A(G_B(b)); [B, H, W, C] float32.
    idt_a, idt_b: G_A(b) and G_B(a), or None when lambda_identity is 0.
    logits_a, logits_b: D_A(fake_b) and D_B(fake_a) logits.
    a, b: the real batches.
    w: loss weights.

  Returns:
    (total scalar, dict of the weighted parts).
  """
  m = {'adv_a': adversarial.gan_g_loss(logits_a, w.adversarial),
       'adv_b': adversarial.gan_g_loss(logits_b, w.adversarial),
       'cycle_a': w.lambda_a * jnp.mean(jnp.abs(rec_a - a)),
       'cycle_b': w.lambda_b * jnp.mean(jnp.abs(rec_b - b))}
  if w.lambda_identity > 0:
    m['idt_a'] = w.lambda_b * w.lambda_identity * jnp.mean(jnp.abs(idt_a - b))
    m['idt_b'] = w.lambda_a * w.lambda_identity * jnp.mean(jnp.abs(idt_b - a))
  return sum(m.values()), m


def cycle_update(cs: CycleState, a: jax.Array, b: jax.Array, key: jax.Array,
                 *, nets: CycleNets, txs: CycleTxs, w: CycleWeights):
  """One CycleGAN step: both generators, then both discriminators.

  Args:
    cs: the CycleGAN state.
    a: [B, H, W, C_a] float32 in [-1, 1], domain A batch.
    b: [B, H, W, C_b] float32 in [-1, 1], domain B batch (unpaired).
    key: PRNG key for this step.
    nets, txs, w: modules, optimizers, loss weights.

  Returns:
    (new state, scalar metrics, (fake_b, feats_a)): G_A(a) [B, H, W, C_b]
    and G_A's feature dict on ``a``, both from before the update and
    stop-gradient'ed (what an online distillation reads).
  """
  ka1, ka2, ka3, kb1, kb2, kb3, pa_key, pb_key = jax.random.split(key, 8)
  use_idt = w.lambda_identity > 0
  if use_idt and a.shape[-1] != b.shape[-1]:
    raise ValueError(f'identity loss needs equal channel counts in A and B, '
                     f'got {a.shape[-1]} and {b.shape[-1]}; set '
                     'lambda_identity=0')

  def d_logits(module, net, x):
    (logits, _), _ = apply_net(module, net.params, net.batch_stats, x,
                               train=True)
    return logits

  def loss_fn(params):
    pa, pb = params
    bs_a, bs_b = cs.g_a.batch_stats, cs.g_b.batch_stats
    (fake_b, feats), bs_a = apply_net(nets.g_a, pa, bs_a, a, train=True, key=ka1)
    (rec_a, _), bs_b = apply_net(nets.g_b, pb, bs_b, fake_b, train=True, key=kb1)
    (fake_a, _), bs_b = apply_net(nets.g_b, pb, bs_b, b, train=True, key=kb2)
    (rec_b, _), bs_a = apply_net(nets.g_a, pa, bs_a, fake_a, train=True, key=ka2)
    idt_a = idt_b = None
    if use_idt:
      (idt_a, _), bs_a = apply_net(nets.g_a, pa, bs_a, b, train=True, key=ka3)
      (idt_b, _), bs_b = apply_net(nets.g_b, pb, bs_b, a, train=True, key=kb3)
    total, m = generator_losses(
        rec_a, rec_b, idt_a, idt_b,
        d_logits(nets.d_a, cs.d_a, fake_b), d_logits(nets.d_b, cs.d_b, fake_a),
        a, b, w)
    m['loss'] = total
    return total, (m, bs_a, bs_b, fake_b, fake_a, feats)

  (_, (m_g, bs_a, bs_b, fake_b, fake_a, feats)), (g_a, g_b) = (
      jax.value_and_grad(loss_fn, has_aux=True)((cs.g_a.params,
                                                 cs.g_b.params)))
  m_g['grad_norm'] = global_norm((g_a, g_b))
  new_g_a = apply_gradients(cs.g_a, g_a, txs.g, batch_stats=bs_a)
  new_g_b = apply_gradients(cs.g_b, g_b, txs.g, batch_stats=bs_b)

  pool_b, pooled_b = pool_query(cs.pool_b, fake_b, pb_key)
  pool_a, pooled_a = pool_query(cs.pool_a, fake_a, pa_key)
  d_a, m_da = adv_lib.d_update(cs.d_a, adv_lib.train_apply(nets.d_a), txs.d,
                               b, [pooled_b], kind=w.adversarial, scale=0.5)
  d_b, m_db = adv_lib.d_update(cs.d_b, adv_lib.train_apply(nets.d_b), txs.d,
                               a, [pooled_a], kind=w.adversarial, scale=0.5)
  new = CycleState(g_a=new_g_a, g_b=new_g_b, d_a=d_a, d_b=d_b,
                   pool_a=pool_a, pool_b=pool_b)
  metrics = {**prefix('g', m_g), **prefix('d_a', m_da),
             **prefix('d_b', m_db)}
  return new, metrics, (sg(fake_b), jax.tree.map(sg, feats))


def make_cycle(config, a_shape, b_shape, generator_section):
  """(nets, txs, weights) from config.cyclegan/disc/optim.{g,d}."""
  nets = CycleNets(
      g_a=nets_lib.resnet_generator(generator_section, b_shape[-1]),
      g_b=nets_lib.resnet_generator(generator_section, a_shape[-1]),
      d_a=nets_lib.patch_discriminator(config.disc),
      d_b=nets_lib.patch_discriminator(config.disc))
  o, n = config.optim, config.total_steps
  txs = CycleTxs(g=make_adam(**o.g, total_steps=n),
                 d=make_adam(**o.d, total_steps=n))
  cg = config.cyclegan
  w = CycleWeights(adversarial=cg.adversarial, lambda_a=cg.lambda_a,
                   lambda_b=cg.lambda_b, lambda_identity=cg.lambda_identity)
  return nets, txs, w


def domain_keys(config, sample_batch, need_b: bool = True) -> tuple[str, str]:
  """``config.cyclegan.domains`` checked against the batch keys."""
  a_key, b_key = config.cyclegan.domains
  for k in (a_key, b_key) if need_b else (a_key,):
    if k not in sample_batch:
      raise errors.UserError(
          f'config.cyclegan.domains names batch key {k!r}, but the data set '
          f'gives {sorted(sample_batch)}')
  return a_key, b_key

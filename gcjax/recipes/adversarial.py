"""The adversarial updates every GAN-trained network shares.

One discriminator update (``d_update``) and one generator loss
(``g_adv_loss``) serve unconditional data (DCGAN, KD), paired data (Pix2Pix:
the discriminator sees ``concat(src, image)``, see ``conditional``) and
unpaired data (CycleGAN: halved loss on pooled fakes, ``scale=0.5``).
Discriminators are passed as ``apply_fn(params, batch_stats, x) ->
((logits, features), new_batch_stats)`` in train mode, so the caller decides
what the discriminator sees; ``extra`` hooks add terms that read the
discriminator's features (e.g. an encoder head's latent regression).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from gcjax import errors
from gcjax.objectives import adversarial
from gcjax.state import NetState, apply_gradients, apply_net, global_norm

KINDS = ('vanilla', 'lsgan', 'hinge', 'wgan-gp')


class Adversarial(NamedTuple):
  """An adversarial recipe: loss ``kind``, gradient-penalty weight, and
  critic updates per generator update."""
  kind: str = 'vanilla'
  gp_weight: float = 10.0
  n_critic: int = 1

  @property
  def loss_kind(self) -> str:
    """The ``objectives.adversarial`` loss name (WGAN-GP's loss is 'wgan')."""
    return 'wgan' if self.kind == 'wgan-gp' else self.kind


def check(adv: Adversarial, disc_norm: str, allowed=KINDS) -> None:
  """Raises UserError on an unknown kind, bad n_critic or a BN critic."""
  if adv.kind not in allowed:
    raise errors.UserError(f'config.loss.adversarial={adv.kind!r}; expected '
                           f'one of {tuple(allowed)}')
  if adv.n_critic < 1:
    raise errors.UserError(
        f'config.loss.n_critic must be >= 1, got {adv.n_critic}')
  if adv.kind == 'wgan-gp' and disc_norm == 'batch':
    raise errors.UserError(
        "WGAN-GP's gradient penalty is per example: set config.disc.norm to "
        "'layer' or 'none', not 'batch'")


def train_apply(module) -> Callable:
  """``apply_fn`` of a discriminator module in train mode (no dropout)."""
  def apply_fn(params, batch_stats, x):
    return apply_net(module, params, batch_stats, x, train=True)
  return apply_fn


def conditional(apply_fn: Callable, src: jax.Array) -> Callable:
  """A discriminator that judges ``concat(src, image)`` (Pix2Pix)."""
  def cond_fn(params, batch_stats, img):
    return apply_fn(params, batch_stats, jnp.concatenate([src, img], -1))
  return cond_fn


def d_update(disc: NetState, apply_fn: Callable, tx, real: jax.Array,
             fakes: Sequence[jax.Array], *, kind: str, scale: float = 1.0,
             gp_weight: float = 0.0, gp_key: jax.Array | None = None,
             r1_weight: float = 0.0, extra: Callable | None = None):
  """One discriminator update on real vs (stop-gradient) fake images.

  Args:
    disc: the discriminator's state.
    apply_fn: ``fn(params, batch_stats, x) -> ((logits, feats), new_bs)``.
    tx: its optimizer.
    real: the real batch.
    fakes: one or more fake batches (several generators may share one
      discriminator: their losses are averaged); gradients are stopped.
    kind: the ``objectives.adversarial`` loss (vanilla, lsgan, hinge, wgan).
    scale: loss weight (CycleGAN halves the discriminator loss).
    gp_weight: > 0 adds the WGAN-GP gradient penalty on the last fake.
    gp_key: PRNG key of the penalty's interpolation weights.
    r1_weight: > 0 adds ``r1_weight`` x the R1 penalty on the real batch
      (StyleGAN2/DLSGAN: 10 every step).
    extra: ``fn(real_out, fake_outs) -> (loss, metrics)`` added to the loss;
      ``*_out`` are the discriminator's ``(logits, feats)``.

  Returns:
    (new state, metrics: loss (loss<i> per fake when several), real and
    fake mean logits, gp, r1, grad_norm, and the extra term's metrics).
  """
  fakes = [jax.lax.stop_gradient(f) for f in fakes]

  def loss_fn(params):
    real_out, bs = apply_fn(params, disc.batch_stats, real)
    m, losses, fake_outs = {}, [], []
    for i, fake in enumerate(fakes):
      out, bs = apply_fn(params, bs, fake)
      fake_outs.append(out)
      losses.append(adversarial.gan_d_loss(real_out[0], out[0], kind))
      if len(fakes) > 1:
        m[f'loss{i}'] = losses[-1]
    loss = losses[0] if len(losses) == 1 else sum(losses) / len(losses)
    if scale != 1.0:
      loss = scale * loss
    m['real'] = jnp.mean(real_out[0])
    m['fake'] = jnp.mean(jnp.stack([jnp.mean(o[0]) for o in fake_outs]))
    if gp_weight > 0:
      gp = adversarial.gradient_penalty(
          lambda x: apply_fn(params, bs, x)[0][0], real, fakes[-1], gp_key)
      loss = loss + gp_weight * gp
      m['gp'] = gp
    if r1_weight > 0:
      r1 = adversarial.r1_penalty(
          lambda x: apply_fn(params, bs, x)[0][0], real)
      loss = loss + r1_weight * r1
      m['r1'] = r1
    if extra is not None:
      e_loss, e_m = extra(real_out, fake_outs)
      loss = loss + e_loss
      m.update(e_m)
    m['loss'] = loss
    return loss, (bs, m)

  (_, (bs, m)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      disc.params)
  m['grad_norm'] = global_norm(grads)
  return apply_gradients(disc, grads, tx, batch_stats=bs), m


def g_adv_loss(apply_fn: Callable, disc: NetState, fake: jax.Array,
               kind: str, extra: Callable | None = None):
  """The generator's adversarial loss against ``disc`` (train-mode D).

  ``extra(fake_out) -> (loss, metrics)`` adds a term that reads the
  discriminator's output on the fakes. Returns (loss, metrics) with
  ``extra``, else the scalar loss.
  """
  out, _ = apply_fn(disc.params, disc.batch_stats, fake)
  loss = adversarial.gan_g_loss(out[0], kind)
  if extra is None:
    return loss
  e_loss, e_m = extra(out)
  return loss + e_loss, e_m


def chunks(x: jax.Array, n: int) -> list[jax.Array]:
  """[n * b, ...] -> n arrays [b, ...] (raises if not divisible)."""
  if x.shape[0] % n:
    raise errors.UserError(f'batch of {x.shape[0]} is not divisible by '
                           f'config.loss.n_critic={n}')
  return list(x.reshape(n, x.shape[0] // n, *x.shape[1:]))

"""Pix2Pix generator/discriminator plumbing shared by ``gan`` and ``omgd``.

Builds the linen modules from config sections and gives the pure helpers
both methods need: a generator forward with dropout/batch-norm handling,
the conditional discriminator forward, and the discriminator update.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gcjax.methods.base import NetState, apply_gradients, global_norm
from gcjax.models import patchgan, unet
from gcjax.objectives import adversarial


def make_unet(section, out_ch: int) -> unet.UNetGenerator:
  """A U-Net from a config section with ngf, norm, dropout, n_res."""
  return unet.UNetGenerator(ngf=section.ngf, out_ch=out_ch, norm=section.norm,
                            dropout=section.dropout, n_res=section.n_res)


def make_patchgan(section) -> patchgan.PatchDiscriminator:
  return patchgan.PatchDiscriminator(ndf=section.ndf,
                                     n_layers=section.n_layers,
                                     norm=section.norm)


def gen_apply(module, params, batch_stats, x, key, train: bool):
  """Generator forward. Returns ((image, feats), new_batch_stats)."""
  v = {'params': params}
  if batch_stats is not None:
    v['batch_stats'] = batch_stats
  if train:
    mutable = ['batch_stats'] if batch_stats is not None else []
    out, upd = module.apply(v, x, train=True, rngs={'dropout': key},
                            mutable=mutable)
    return out, upd.get('batch_stats', batch_stats)
  return module.apply(v, x, train=False), batch_stats


def disc_apply(module, params, batch_stats, src, img):
  """Conditional PatchGAN on concat(src, img) in train mode.

  Returns (logits, new_batch_stats).
  """
  v = {'params': params}
  if batch_stats is not None:
    v['batch_stats'] = batch_stats
  mutable = ['batch_stats'] if batch_stats is not None else []
  (logits, _), upd = module.apply(v, jnp.concatenate([src, img], -1),
                                  train=True, mutable=mutable)
  return logits, upd.get('batch_stats', batch_stats)


def disc_update(disc: NetState, module, tx, src, real, fakes, kind: str):
  """One discriminator step on real pairs and (stop-gradient) fake pairs.

  ``fakes`` is a list of generator outputs (several teachers may share one
  discriminator); their losses are averaged.
  """
  def loss_fn(params):
    real_logits, bs = disc_apply(module, params, disc.batch_stats, src, real)
    losses, metrics = [], {}
    for i, fake in enumerate(fakes):
      fake_logits, bs = disc_apply(module, params, bs, src,
                                   jax.lax.stop_gradient(fake))
      loss = adversarial.gan_d_loss(real_logits, fake_logits, kind)
      losses.append(loss)
      metrics[f'loss{i}' if len(fakes) > 1 else 'loss'] = loss
    metrics['real'] = jnp.mean(real_logits)
    return sum(losses) / len(losses), (bs, metrics)

  (_, (bs, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      disc.params)
  metrics['grad_norm'] = global_norm(grads)
  return apply_gradients(disc, grads, tx, batch_stats=bs), metrics


def gen_adv_loss(module, disc: NetState, src, fake, kind: str):
  """Generator adversarial loss against the (updated) discriminator."""
  logits, _ = disc_apply(module, disc.params, disc.batch_stats, src, fake)
  return adversarial.gan_g_loss(logits, kind)

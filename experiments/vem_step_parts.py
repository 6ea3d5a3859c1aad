"""The OMGD + VEM pix2pix train step split into parts, each jitted alone.

``parts(method, state, batch, frozen, key)`` lists the networks' passes of
one ``omgd`` pix2pix train step (``gcjax.methods.omgd.pix2pix``) at the
step's own shapes, each as a separate function to jit and time:

* each generator (wide teacher, deep teacher, student): forward in train
  mode, and forward + backward to its parameters;
* the conditional PatchGAN: forward on one batch, forward + backward to its
  parameters (3 times in the step: real + 2 fakes in the D update) and to
  its input (once per teacher, for the generator's GAN loss);
* VGG16 on the images the style/perceptual losses use (forward on the two
  teacher outputs, forward + backward on the student's);
* the student's other loss terms (SSIM, L1, TV against each teacher);
* the MI critic update: the energy net's Langevin chain of K steps plus its
  own update (``mi.update``), and the student's MI term (forward + backward
  of the energy net on t+ and t- to s);
* the Adam updates of the teachers, discriminator, student and adapters.

Each part carries ``count``: how many times the step runs it, so that the
sum of ``count * time`` is the step's time without overhead.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gcjax.objectives import distill
from gcjax.recipes import adversarial as adv_lib
from gcjax.recipes import distill as distill_lib
from gcjax.state import apply_gradients, apply_net


class Part(NamedTuple):
  name: str
  kind: str        # 'fwd' | 'fwd+bwd' | 'update'
  count: int       # times the step runs it (0: shown only, inside another)
  fn: object       # pure function to jit
  args: tuple


def _mean_leaves(tree) -> jax.Array:
  return sum(jnp.mean(x.astype(jnp.float32)) for x in jax.tree.leaves(tree))


def _generator(name, module, net, src, key) -> list[Part]:
  def fwd(params, bs, x, k):
    return apply_net(module, params, bs, x, train=True, key=k)[0][0]

  def fwd_bwd(params, bs, x, k):
    return jax.grad(lambda p: _mean_leaves(fwd(p, bs, x, k)))(params)
  args = (net.params, net.batch_stats, src, key)
  return [Part(name, 'fwd', 0, fwd, args),
          Part(name, 'fwd+bwd', 1, fwd_bwd, args)]


def parts(method, state, batch, frozen, key, langevin_steps=None
          ) -> list[Part]:
  """The step's parts at the shapes of ``batch`` (see the module doc)."""
  kw = method.train_step.keywords
  nets, txs, mi = kw['nets'], kw['txs'], kw['mi']
  w = kw['w'].student
  src, tgt = batch['src'], batch['tgt']
  out = []
  names = ('teacher (wide)', 'teacher (deep)')
  for name, module, net in zip(names, nets.teachers, state.teachers):
    out += _generator(name, module, net, src, key)
  out += _generator('student', nets.student, state.student, src, key)

  d_apply = adv_lib.train_apply(nets.disc)

  def d_fwd(params, bs, s, img):
    return adv_lib.conditional(d_apply, s)(params, bs, img)[0][0]

  def d_to_params(params, bs, s, img):
    return jax.grad(lambda p: _mean_leaves(d_fwd(p, bs, s, img)))(params)

  def d_to_input(params, bs, s, img):
    return jax.grad(lambda x: _mean_leaves(d_fwd(params, bs, s, x)))(img)
  d_args = (state.disc.params, state.disc.batch_stats, src, tgt)
  n_fake = len(nets.teachers)
  out += [Part('discriminator', 'fwd', 0, d_fwd, d_args),
          Part('discriminator', 'fwd+bwd to params', 1 + n_fake,
               d_to_params, d_args),
          Part('discriminator', 'fwd+bwd to input', n_fake, d_to_input,
               d_args)]

  if distill_lib.uses_vgg(w):
    layers = tuple(dict.fromkeys((*w.style_layers, 'relu2_2')))

    def vgg_fwd(fr, x):
      return distill_lib.vgg_features(fr, x, layers)

    def vgg_fwd_bwd(fr, x):
      return jax.grad(lambda y: _mean_leaves(vgg_fwd(fr, y)))(x)
    out += [Part('VGG16', 'fwd', n_fake, vgg_fwd, (frozen, tgt)),
            Part('VGG16', 'fwd+bwd', 1, vgg_fwd_bwd, (frozen, tgt))]

  def other_losses(s, ts):
    def loss(x):
      return sum(w.ssim * distill.ssim_loss(x, t) + w.l1 * distill.l1(x, t)
                 for t in ts) + w.tv * distill.total_variation(x, 'sum')
    return jax.grad(loss)(s)
  teachers_out = tuple(tgt[::-1] for _ in nets.teachers)
  out.append(Part('SSIM + L1 + TV losses', 'fwd+bwd', 1, other_losses,
                  (src, teachers_out)))

  if mi.kind != 'none':
    def mi_update(mi_state, t_pos, s, k):
      return mi.update(mi_state, t_pos, s, k)[0]

    def mi_student(mi_state, t_pos, s, t_neg):
      return jax.grad(lambda x: mi.student_loss(
          mi_state, t_pos, x, {'t_neg': t_neg})[0])(s)
    label = (f'energy net: Langevin K={langevin_steps} + its update'
             if mi.kind == 'vem' else f'MI critic ({mi.kind}) update')
    out += [Part(label, 'update', 1, mi_update, (state.mi, tgt, src, key)),
            Part('MI student term', 'fwd+bwd', 1, mi_student,
                 (state.mi, tgt, src, tgt[::-1]))]

  pairs = [*zip(state.teachers, txs.teachers), (state.disc, txs.disc),
           (state.student, txs.student), (state.adapt, txs.adapt)]

  def adam_all(nets_):
    return [apply_gradients(n, jax.tree.map(jnp.ones_like, n.params), tx)
            for n, (_, tx) in zip(nets_, pairs)]
  out.append(Part(f'Adam updates ({len(pairs)} nets)', 'update', 1,
                  adam_all, ([n for n, _ in pairs],)))
  return out


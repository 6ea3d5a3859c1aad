"""OMGD's student update, shared by its Pix2Pix and CycleGAN tasks.

Given the teacher images and the wide teacher's feature maps of a step,
``student_update`` runs the student (train mode), updates the MI critic on
the detached student output, and updates the student and its feature
adapters with OMGD's loss, summed over teachers: ``ssim`` * (1 - SSIM) +
``l1`` * L1 + ``style`` * Gram-L1(VGG16) + ``perceptual`` * L1(VGG16
relu2_2), plus ``tv`` * TV of the student image, ``feature`` * MSE of
channel means between adapted student maps and teacher maps, and the MI
student term. The student never meets a discriminator.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gcjax.objectives import distill
from gcjax.state import NetState, apply_gradients, global_norm


class StudentWeights(NamedTuple):
  """Student loss weights (``omgd.LossWeights`` has the same fields)."""
  ssim: float = 10.0
  style: float = 1e4
  perceptual: float = 10.0
  tv: float = 1e-5
  feature: float = 10.0
  l1: float = 0.0
  feature_layers: tuple = ()
  style_layers: tuple = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')


class Adapters(nn.Module):
  """One ``distill.Adapter`` per distilled student feature map.

  Attributes:
    out_channels: teacher widths, one per map.
    layers: names of the student maps it reads (bookkeeping only).
  """
  out_channels: tuple
  layers: tuple = ()

  @nn.compact
  def __call__(self, feats: Sequence[jax.Array], train: bool = False
               ) -> tuple[jax.Array, ...]:
    """Args: feats, [B, H, W, C_s] maps. Returns [B, H, W, C_t] maps."""
    if len(feats) != len(self.out_channels):
      raise ValueError(f'Adapters: {len(self.out_channels)} adapters, got '
                       f'{len(feats)} feature maps')
    return tuple(distill.Adapter(c, name=f'adapter{i}')(f, train=train)[0]
                 for i, (c, f) in enumerate(zip(self.out_channels, feats)))


def vgg_features(frozen, x: jax.Array, layers: Sequence[str]):
  """VGG16 activations of ``x`` with the trunk in ``frozen['vgg']``."""
  from gcjax.models import vgg
  return vgg.vgg16_features(frozen['vgg'], x, layers=layers)


def uses_vgg(w) -> bool:
  return w.style > 0 or w.perceptual > 0


def student_update(student: NetState, adapt: NetState, mi_state, src,
                   t_imgs: Sequence[jax.Array], t_maps: dict, t_pos, key,
                   frozen, *, student_fwd, adapt_module,
                   tx_student: optax.GradientTransformation,
                   tx_adapt: optax.GradientTransformation, w, mi,
                   tv_reduction: str = 'mean'):
  """MI critic update, then one student + adapter update.

  Args:
    student: the student's NetState.
    adapt: the adapters' NetState.
    mi_state: the MI add-on's state (``gcjax.objectives.mi``).
    src: [B, H, W, C] float32 student input.
    t_imgs: teacher outputs [B, H, W, C_out] (any number of teachers);
      treated as constants.
    t_maps: layer name -> wide-teacher feature map, for
      ``w.feature_layers``; treated as constants.
    t_pos: [B, H, W, C_out] positive sample t+ of the MI add-on.
    key: PRNG key (student dropout and MI critic).
    frozen: dict with 'vgg' when style or perceptual weights are > 0.
    student_fwd: ``fn(params, batch_stats, src, key) -> ((img, feats),
      new_batch_stats)`` in train mode.
    adapt_module: an ``Adapters`` module.
    tx_student, tx_adapt: optimizers.
    w: weights with the ``StudentWeights`` fields.
    mi: the ``MI`` record.
    tv_reduction: 'mean' or 'sum' (OMGD's CycleGAN distiller sums).

  Returns:
    (student, adapt, mi_state, metrics): metrics are scalars named
    ``s/<part>`` plus the MI critic's own ``mi/...`` / ``ebm/...`` ones;
    with an MI add-on, ``s/mi_grad_ratio`` = |d(MI term)/ds| / |d(rest of
    the loss)/ds| over the batch (the rest's feature terms reach the
    student through its feature maps, not s, and are not counted).
  """
  s_key, mi_key = jax.random.split(key)
  t_imgs = [jax.lax.stop_gradient(t) for t in t_imgs]
  t_maps = {n: jax.lax.stop_gradient(t_maps[n]) for n in w.feature_layers}
  t_pos = jax.lax.stop_gradient(t_pos)

  def s_fwd(params):
    (img, feats), bs = student_fwd(params, student.batch_stats, src, s_key)
    return (img, tuple(feats[n] for n in w.feature_layers)), bs

  (s_img, s_maps), s_vjp, s_bs = jax.vjp(s_fwd, student.params, has_aux=True)
  mi_state, mi_aux, metrics = mi.update(mi_state, t_pos,
                                        jax.lax.stop_gradient(s_img), mi_key)
  metrics = dict(metrics)

  vgg_layers = tuple(dict.fromkeys((*w.style_layers, 'relu2_2')))
  t_vgg = ([vgg_features(frozen, t, vgg_layers) for t in t_imgs]
           if uses_vgg(w) else None)

  def loss_fn(img, maps, adapt_params):
    m, total = {}, 0.0
    s_vgg = vgg_features(frozen, img, vgg_layers) if uses_vgg(w) else None
    for k, t in enumerate(t_imgs):
      parts = {'ssim': distill.ssim_loss(img, t), 'l1': distill.l1(img, t)}
      if uses_vgg(w):
        parts['style'] = distill.style_loss(
            [s_vgg[n] for n in w.style_layers],
            [t_vgg[k][n] for n in w.style_layers])
        parts['perceptual'] = distill.perceptual_loss(
            s_vgg['relu2_2'], t_vgg[k]['relu2_2'])
      for name, v in parts.items():
        total = total + getattr(w, name) * v
        m[f'{name}{k}' if len(t_imgs) > 1 else name] = v
    tv = distill.total_variation(img, reduction=tv_reduction)
    feat = jnp.zeros(())
    a_bs = adapt.batch_stats
    if w.feature_layers:
      adapted, upd = adapt_module.apply(
          {'params': adapt_params, 'batch_stats': adapt.batch_stats}, maps,
          train=True, mutable=['batch_stats'])
      a_bs = upd['batch_stats']
      feat = sum(distill.channel_mean_mse(a, t_maps[n])
                 for a, n in zip(adapted, w.feature_layers))
    total = total + w.tv * tv + w.feature * feat
    m.update(tv=tv, feature=feat, loss=total)
    return total, (m, a_bs)

  (_, (m_s, a_bs)), (g_img, g_maps, g_adapt) = jax.value_and_grad(
      loss_fn, argnums=(0, 1, 2), has_aux=True)(s_img, s_maps, adapt.params)
  if mi.kind != 'none':
    # The MI term's gradient on s, apart, for the diagnostic ratio
    # |d(lambda_MI term)/ds| / |dL_algo/ds| (the term only reaches s).
    (mi_term, m_mi), g_mi = jax.value_and_grad(
        lambda x: mi.student_loss(mi_state, t_pos, x, mi_aux), has_aux=True)(
            s_img)
    m_s.update(m_mi)
    m_s['loss'] = m_s['loss'] + mi_term
    m_s['mi_grad_ratio'] = global_norm(g_mi) / jnp.maximum(
        global_norm(g_img), 1e-20)
    g_img = g_img + g_mi
  g_student, = s_vjp((g_img, g_maps))
  m_s['grad_norm'] = global_norm(g_student)
  metrics.update({f's/{k}': v for k, v in m_s.items()})
  student = apply_gradients(student, g_student, tx_student, batch_stats=s_bs)
  if w.feature_layers:
    adapt = apply_gradients(adapt, g_adapt, tx_adapt, batch_stats=a_bs)
  return student, adapt, mi_state, metrics

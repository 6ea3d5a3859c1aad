"""GAN flavour ``stylegan``: a style-based generator, optionally with DLS.

The recipe of the DLSGAN paper (Cho & Krzyzak 2022, Algorithm 1; settings
from the author's code): a ``StyleGenerator`` and a ``StyleDiscriminator``
whose second head encodes images back to z. Per step, with s the latent
scale of the DLS state *before* this step's update (``dls.enabled=False``:
s = 1, the No-DLS baseline):

  D: softplus(-D(x)) + softplus(D(G(z*s))) + lambda_enc L_enc + r1 R1(x)
  G: softplus(-D(G(z*s))) [+ lambda_enc L_enc if dls.enc_on == 'dg']
  L_enc = mean((z' - z)^2 s^2), z' = D's latent head on G(z*s)

then the tracker takes the batch mean of z'^2 from the discriminator
update's forward pass. The generator runs once per step (its VJP is
reused for its update, as in the ``dcgan`` flavour). Adam (0, 0.99); the
mapping network has its own learning rate (``optim.map``); every rate is
multiplied by ``optim.decay_rate`` each ``optim.epoch_steps`` steps.

Style mixing (``generator.mixing_prob`` > 0, for style-based teachers):
with that probability a row takes a second z from a random layer cutoff
on; L_enc then counts only the unmixed rows.

Predict functions: ``generator`` (G(z*s) from the batch's ``z``),
``recon`` (G(E(x)*s) of the batch's images), ``gen_recon`` (G(E(G(z*s))*s),
score it against ``generator``) and ``encode`` (E(x), [B, z_dim]: not an
image, name it in no image evaluator). Exports ``generator`` (its variables
carry ``dls/scale``, so ``G(z)`` with z ~ N(0, I) samples as in training)
and ``disc`` (with the encoder head).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from gcjax import errors
from gcjax.methods.base import (
  Method,
  NetState,
  Network,
  create_net_state,
  output_update,
  prefix,
  require_data,
)
from gcjax.methods.gan import dcgan as gan_dcgan
from gcjax.models import stylegan
from gcjax.objectives import dls as dls_lib
from gcjax.recipes import adversarial as adv_lib

IMAGE_KEY = 'img'
ENC_ON = ('d', 'dg')


@flax.struct.dataclass
class State:
  step: jax.Array
  gen: NetState
  disc: NetState
  dls: object        # the tracker's state (dls_lib.RingState / EmaState)


class Nets(NamedTuple):
  gen: stylegan.StyleGenerator
  disc: stylegan.StyleDiscriminator


class Txs(NamedTuple):
  gen: optax.GradientTransformation
  disc: optax.GradientTransformation


class Hparams(NamedTuple):
  """The step's static settings."""
  dls_enabled: bool
  tracker: dls_lib.Tracker
  lambda_enc: float
  enc_on_g: bool
  r1_weight: float
  mixing_prob: float


def adam(lr: float, b1: float, b2: float, decay_rate: float,
         epoch_steps: int) -> optax.GradientTransformation:
  """Adam whose rate is multiplied by ``decay_rate`` every epoch."""
  sched = optax.exponential_decay(lr, max(1, epoch_steps), decay_rate,
                                  staircase=True)
  return optax.adam(sched, b1=b1, b2=b2)


def gen_tx(synthesis: optax.GradientTransformation,
           mapping: optax.GradientTransformation):
  """The generator's optimizer: ``mapping`` for the mapping network's
  parameters, ``synthesis`` for the rest."""
  def labels(params):
    return {k: jax.tree.map(lambda _, k=k: 'map' if k == 'mapping'
                            else 'syn', v) for k, v in params.items()}
  return optax.multi_transform({'syn': synthesis, 'map': mapping}, labels)


def scale_of(state: State, hp: Hparams, z_dim: int) -> jax.Array:
  """The latent scale s [z_dim] of ``state`` (ones without DLS)."""
  if not hp.dls_enabled:
    return jnp.ones((z_dim,), jnp.float32)
  return dls_lib.latent_scale(hp.tracker.variance(state.dls))


def create_state(key, *, nets: Nets, txs: Txs, hp: Hparams,
                 image_shape) -> State:
  g_key, d_key = jax.random.split(key)
  gen = create_net_state(nets.gen, txs.gen, g_key,
                         jnp.zeros((1, nets.gen.z_dim)))
  disc = create_net_state(nets.disc, txs.disc, d_key,
                          jnp.zeros((1, *image_shape)))
  return State(step=jnp.zeros((), jnp.int32), gen=gen, disc=disc,
               dls=hp.tracker.init(nets.gen.z_dim))


def _styles(gen, params, z, s, z2, cutoff):
  """Per-layer styles of z*s (mixed with z2*s from ``cutoff`` on)."""
  w = gen.apply({'params': params}, z * s, method='map')
  if z2 is None:
    return jnp.repeat(w[:, None], gen.num_ws, axis=1)
  w2 = gen.apply({'params': params}, z2 * s, method='map')
  return stylegan.mix_styles(w, w2, cutoff, gen.num_ws)


def train_step(state: State, batch, key, frozen, *, nets: Nets, txs: Txs,
               hp: Hparams):
  """One discriminator update, one generator update, one DLS update."""
  del frozen
  key = jax.random.fold_in(key, state.step)
  z_key, z2_key, mix_key, cut_key = jax.random.split(key, 4)
  real = batch[IMAGE_KEY]
  b, z_dim, n_ws = real.shape[0], nets.gen.z_dim, nets.gen.num_ws
  s = scale_of(state, hp, z_dim)
  z = jax.random.normal(z_key, (b, z_dim))
  z2 = cutoff = None
  mask = jnp.ones((b,), jnp.float32)
  if hp.mixing_prob > 0:
    z2 = jax.random.normal(z2_key, (b, z_dim))
    mixed = jax.random.uniform(mix_key, (b,)) < hp.mixing_prob
    cutoff = jnp.where(mixed, jax.random.randint(cut_key, (b,), 1, n_ws),
                       n_ws)
    mask = 1.0 - mixed.astype(jnp.float32)

  def g_fwd(params):
    ws = _styles(nets.gen, params, z, s, z2, cutoff)
    return nets.gen.apply({'params': params}, ws, method='synthesize')[0]

  fake, g_vjp = jax.vjp(g_fwd, state.gen.params)

  def enc(out):
    return dls_lib.encoder_loss(out[1]['latent'], z, s, mask)

  def d_extra(real_out, fake_outs):
    del real_out
    l_enc = enc(fake_outs[0])
    zsq = dls_lib.second_moment(fake_outs[0][1]['latent'])
    return hp.lambda_enc * l_enc, {'enc': l_enc, '_zsq': zsq}

  disc, m_d = adv_lib.d_update(
      state.disc, adv_lib.train_apply(nets.disc), txs.disc, real, [fake],
      kind='vanilla', r1_weight=hp.r1_weight, extra=d_extra)
  zsq = m_d.pop('_zsq')

  def g_extra(fake_out):
    l_enc = enc(fake_out)
    weight = hp.lambda_enc if hp.enc_on_g else 0.0
    return weight * l_enc, {'enc': l_enc}

  gen, m_g = output_update(
      state.gen, txs.gen, g_vjp, fake,
      lambda x: adv_lib.g_adv_loss(adv_lib.train_apply(nets.disc), disc, x,
                                   'vanilla', extra=g_extra))
  new_dls = hp.tracker.update(state.dls, zsq) if hp.dls_enabled else (
      state.dls)
  m_dls = {'entropy': dls_lib.entropy(s), 'scale_max': jnp.max(s),
           'scale_min': jnp.min(s)}
  new = state.replace(step=state.step + 1, gen=gen, disc=disc, dls=new_dls)
  return new, {**prefix('g', m_g), **prefix('d', m_d), **prefix('dls', m_dls)}


def _generate(state, z, *, nets, hp):
  s = scale_of(state, hp, nets.gen.z_dim)
  return nets.gen.apply({'params': state.gen.params}, z * s)[0]


def _encode(state, img, *, nets):
  return nets.disc.apply({'params': state.disc.params}, img)[1]['latent']


def generator_fwd(state, batch, frozen, *, nets, hp):
  """G(z*s): images [B, R, R, C] from ``batch['z']`` (unscaled latents)."""
  del frozen
  return _generate(state, batch['z'], nets=nets, hp=hp)


def encode_fwd(state, batch, frozen, *, nets):
  """E(x): predicted unscaled latents [B, z_dim] of ``batch['img']``."""
  del frozen
  return _encode(state, batch[IMAGE_KEY], nets=nets)


def recon_fwd(state, batch, frozen, *, nets, hp):
  """G(E(x)*s): reconstructions of ``batch['img']``."""
  del frozen
  return _generate(state, _encode(state, batch[IMAGE_KEY], nets=nets),
                   nets=nets, hp=hp)


def gen_recon_fwd(state, batch, frozen, *, nets, hp):
  """G(E(G(z*s))*s): reconstructions of generated images."""
  del frozen
  fake = _generate(state, batch['z'], nets=nets, hp=hp)
  return _generate(state, _encode(state, fake, nets=nets), nets=nets, hp=hp)


def _hparams(config) -> Hparams:
  d = config.dls
  if d.enc_on not in ENC_ON:
    raise errors.UserError(f'config.dls.enc_on={d.enc_on!r}; expected one '
                           f'of {ENC_ON}')
  if d.tracker not in dls_lib.TRACKERS:
    raise errors.UserError(f'config.dls.tracker={d.tracker!r}; expected '
                           f'one of {dls_lib.TRACKERS}')
  if d.buffer < 1 or not 0.0 <= d.ema_decay < 1.0:
    raise errors.UserError(
        f'config.dls.buffer must be >= 1 (got {d.buffer}) and '
        f'config.dls.ema_decay in [0, 1) (got {d.ema_decay})')
  p = config.generator.mixing_prob
  if not 0.0 <= p <= 1.0:
    raise errors.UserError(f'config.generator.mixing_prob={p}; expected a '
                           'probability in [0, 1]')
  return Hparams(dls_enabled=bool(d.enabled),
                 tracker=dls_lib.make_tracker(d.tracker, d.buffer,
                                              d.ema_decay),
                 lambda_enc=float(d.lambda_enc), enc_on_g=d.enc_on == 'dg',
                 r1_weight=float(config.loss.r1_weight),
                 mixing_prob=float(p))


def make_nets(config, shape) -> Nets:
  """The generator and discriminator of ``config`` for images ``shape``."""
  g, d = config.generator, config.disc
  res = shape[0]
  if shape[0] != shape[1] or res < 8 or res & (res - 1):
    raise errors.UserError(
        f'gan flavour stylegan needs square power-of-two images >= 8 (set '
        f'config.data.args.resolution); got {shape[:2]}')
  return Nets(
      gen=stylegan.StyleGenerator(
          z_dim=g.z_dim, w_dim=g.w_dim, map_layers=g.map_layers,
          resolution=res, out_ch=shape[-1], ch_base=g.ch_base,
          ch_max=g.ch_max),
      disc=stylegan.StyleDiscriminator(resolution=res, z_dim=g.z_dim,
                                       ch_base=d.ch_base, ch_max=d.ch_max))


def make(config, sample_batch) -> Method:
  """Builds flavour ``stylegan`` from config.generator/disc/loss/dls/optim.

  The image size and channels come from ``sample_batch['img']``.
  """
  require_data(sample_batch, 'gan (stylegan)')
  if IMAGE_KEY not in sample_batch:
    raise errors.UserError(
        f'gan flavour stylegan needs {IMAGE_KEY!r} images in the batch '
        f'(e.g. data name "fashion"); got keys {sorted(sample_batch)}')
  shape = tuple(sample_batch[IMAGE_KEY].shape[1:])
  nets = make_nets(config, shape)
  hp = _hparams(config)
  o = config.optim
  sched = dict(decay_rate=o.decay_rate, epoch_steps=o.epoch_steps)
  txs = Txs(gen=gen_tx(adam(**o.g, **sched), adam(**o.map, **sched)),
            disc=adam(**o.d, **sched))
  z_dim = nets.gen.z_dim

  def finalize(state, frozen):
    del frozen
    gen_vars = {'params': state.gen.params,
                stylegan.DLS: {'scale': scale_of(state, hp, z_dim)}}
    return {'generator': Network(nets.gen, gen_vars, (z_dim,),
                                 section='generator'),
            'disc': Network(nets.disc, {'params': state.disc.params}, shape,
                            section='disc')}

  return Method(
      init=partial(create_state, nets=nets, txs=txs, hp=hp,
                   image_shape=shape),
      train_step=partial(train_step, nets=nets, txs=txs, hp=hp),
      predict={'generator': partial(generator_fwd, nets=nets, hp=hp),
               'recon': partial(recon_fwd, nets=nets, hp=hp),
               'gen_recon': partial(gen_recon_fwd, nets=nets, hp=hp),
               'encode': partial(encode_fwd, nets=nets)},
      finalize=finalize, export=('generator', 'disc'),
      sample_rows=(IMAGE_KEY, 'recon', 'generator', 'gen_recon'),
      eval_inputs=gan_dcgan.latent_inputs(z_dim))

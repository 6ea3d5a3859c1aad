"""Convolutions for the ONNX converter: conv, transposed conv, folding.

A ``conv_general_dilated`` without lhs dilation is one ONNX ``Conv``
(grouped when the jaxpr's is: the depthwise convs). An lhs-dilated one (a
transposed conv) is emitted in one of three forms, ``Graph.transposed``:

* ``'convtranspose'``: one ``ConvTranspose``;
* ``'phases'``: the sub-pixel form, one stride-1 ``Conv`` per output phase
  (only the taps that land on real pixels: the true MACs), ``Concat`` and
  ``DepthToSpace``;
* ``'one_conv'``: one stride-1 ``Conv`` whose output channels are the
  phases (the union of the phases' taps, zero where a phase has none) and
  ``DepthToSpace``.

Which is fastest depends on the runtime (``experiments/bench_deploy.py``
measures them). Conv dicts stay editable until ``Graph.finish`` so that
:func:`fold` can fold per-channel affine ops (inference batch norm, a bias)
into their weights.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from gcjax.export import onnx_rules
from gcjax.export.jaxpr_flat import Eqn

NCHW = (0, 3, 1, 2)
FORMS = ('convtranspose', 'phases', 'one_conv')


def _new(g, op: str, x: str, w: np.ndarray, tile: int, **attrs) -> dict:
  conv = dict(op=op, x=x, w=w, b=None, tile=tile, attrs=attrs,
              w_out_axis=1 if op == 'ConvTranspose' else 0,
              out=g.fresh(op.lower()))
  g.nodes.append(conv)
  return conv


def conv(g, e: Eqn, ins: list) -> 'onnx_rules.Val':
  """The rule for ``conv_general_dilated`` (NHWC/HWIO/NHWC, 2-D)."""
  x, k = g.full(ins[0]), ins[1]
  p = e.params
  if k.const is None:
    raise NotImplementedError('conv with a non-constant kernel')
  lhs, rhs, outs = p['dimension_numbers']
  if len(lhs) != 4 or p['batch_group_count'] != 1:
    raise NotImplementedError('only 2-D convs without batch groups')
  if tuple(lhs) != NCHW or tuple(outs) != NCHW:
    raise NotImplementedError(f'conv layout {p["dimension_numbers"]}')
  w = np.asarray(k.const).transpose(rhs)        # [O, I/g, kh, kw]
  groups = p['feature_group_count']
  pad = [tuple(q) for q in p['padding']]
  strides, rdil = tuple(p['window_strides']), tuple(p['rhs_dilation'])
  ldil = tuple(p['lhs_dilation'])
  xin = g.tensor(x, True)
  shape = tuple(e.out_avals[0].shape)
  if all(d == 1 for d in ldil):
    if any(lo < 0 or hi < 0 for lo, hi in pad):
      raise NotImplementedError('conv with negative padding')
    convs = [_new(g, 'Conv', xin, w, 1, strides=list(strides),
                  dilations=list(rdil), group=groups,
                  kernel_shape=list(w.shape[2:]),
                  pads=[q[0] for q in pad] + [q[1] for q in pad])]
    out = convs[0]['out']
  else:
    if any(s != 1 for s in strides) or any(d != 1 for d in rdil) or \
        groups != 1:
      raise NotImplementedError('lhs-dilated conv with strides, rhs '
                                'dilation or groups')
    out, convs = _transposed(g, xin, w, pad, ldil, x.shape, shape)
  return onnx_rules.Val(shape, shape, x.dtype, name=out, nchw=True,
                        src=('conv', convs, outs[1], w.shape[0]))


def add_conv(g, x: str, w: np.ndarray, **attrs) -> dict:
  """A plain ``Conv`` dict (foldable) on the NCHW tensor ``x``."""
  return _new(g, 'Conv', x, w, 1, **attrs)


def _phase_taps(k: int, s: int, lo: int, r: int) -> list[tuple[int, int]]:
  """(tap t, input offset d) pairs reaching output phase r."""
  return [(t, (r + t - lo) // s) for t in range(k) if (r + t - lo) % s == 0]


def _transposed(g, xin: str, w: np.ndarray, pad, ldil, in_shape, out_shape):
  """``(output name, conv dicts)`` of an lhs-dilated conv (stride ``ldil``)."""
  kh, kw = w.shape[2:]
  sh, sw = ldil
  form = g.transposed
  ok = (sh == sw and out_shape[1] % sh == 0 and out_shape[2] % sw == 0
        and out_shape[1] // sh == in_shape[1]
        and out_shape[2] // sw == in_shape[2])
  if form == 'convtranspose' or not ok:
    begin = [kk - 1 - lo for kk, (lo, _) in zip((kh, kw), pad)]
    end = [kk - 1 - hi for kk, (_, hi) in zip((kh, kw), pad)]
    if min(begin) < 0:
      raise NotImplementedError('transposed conv with padding > kernel - 1')
    extra = [max(0, -q) for q in end]
    end = [max(0, q) for q in end]
    wt = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).copy()   # [I, O, kh, kw]
    c = _new(g, 'ConvTranspose', xin, wt, 1, strides=list(ldil),
             kernel_shape=[kh, kw], pads=begin + end, output_padding=extra)
    return c['out'], [c]
  s = sh
  taps_h = [_phase_taps(kh, s, pad[0][0], r) for r in range(s)]
  taps_w = [_phase_taps(kw, s, pad[1][0], r) for r in range(s)]
  if form == 'one_conv':
    dh = sorted({d for ts in taps_h for _, d in ts})
    dw = sorted({d for ts in taps_w for _, d in ts})
    n_h, n_w = dh[-1] - dh[0] + 1, dw[-1] - dw[0] + 1
    o = w.shape[0]
    wc = np.zeros((s * s * o, w.shape[1], n_h, n_w), w.dtype)
    for rh in range(s):
      for rw in range(s):
        blk = (rh * s + rw) * o
        for th, d1 in taps_h[rh]:
          for tw, d2 in taps_w[rw]:
            wc[blk:blk + o, :, d1 - dh[0], d2 - dw[0]] = w[:, :, th, tw]
    c = _new(g, 'Conv', xin, wc, s * s, kernel_shape=[n_h, n_w],
             pads=[-dh[0], -dw[0], dh[-1], dw[-1]])
    return g.node('DepthToSpace', [c['out']], blocksize=s, mode='DCR'), [c]
  convs = []
  for rh in range(s):
    for rw in range(s):
      th, tw = taps_h[rh], taps_w[rw]
      sub = w[:, :, [t for t, _ in th]][:, :, :, [t for t, _ in tw]]
      pads = [-th[0][1], -tw[0][1], th[-1][1], tw[-1][1]]
      if min(pads) < 0:
        raise NotImplementedError('sub-pixel phase with negative padding')
      convs.append(_new(g, 'Conv', xin, np.ascontiguousarray(sub), 1,
                        kernel_shape=list(sub.shape[2:]), pads=pads))
  cat = g.node('Concat', [c['out'] for c in convs], axis=1)
  return g.node('DepthToSpace', [cat], blocksize=s, mode='DCR'), convs


def fold(g, e: Eqn, ins: list):
  """``conv(x) (+-*/) c``, c per output channel, folded into the conv(s).

  Returns the conv's value (now including the op), or None when the
  pattern does not apply (the conv output has other readers, or ``c``
  varies along other axes).
  """
  name = e.prim.name
  if name not in ('add', 'sub', 'mul', 'div') or len(ins) != 2:
    return None
  orders = [(0, 1)] if name in ('sub', 'div') else [(0, 1), (1, 0)]
  for i, j in orders:
    x, c, atom = ins[i], ins[j], e.inputs[i]
    if not (x.src and x.src[0] == 'conv' and c.const is not None
            and g.uses.get(atom, 0) == 1 and x.stored == x.shape):
      continue
    _, convs, ch, n_out = x.src
    per_ch = _per_channel(c.const, len(x.shape), ch)
    if per_ch is None:
      continue
    per_ch = np.broadcast_to(per_ch, (n_out,))
    for cv in convs:
      w = cv['w']
      v = np.tile(per_ch, cv['tile']).astype(w.dtype)
      b = np.zeros(v.shape, w.dtype) if cv['b'] is None else cv['b']
      shape = [1] * w.ndim
      shape[cv['w_out_axis']] = -1
      if name == 'add':
        b = b + v
      elif name == 'sub':
        b = b - v
      elif name == 'mul':
        w, b = w * v.reshape(shape), b * v
      else:
        w, b = w / v.reshape(shape), b / v
      cv['w'], cv['b'] = w, b
    return onnx_rules.Val(x.shape, x.stored, x.dtype, name=x.name,
                          nchw=x.nchw, src=x.src)
  return None


def _per_channel(c: np.ndarray, rank: int, ch: int):
  """``c`` as a [C] (or scalar) vector if it only varies along axis ``ch``."""
  if c.ndim == 0:
    return c
  if c.ndim != rank or any(n != 1 for i, n in enumerate(c.shape) if i != ch):
    return None
  return c.reshape(-1)


def node(g, cv: dict):
  """The finished ``NodeProto`` of a conv dict."""
  ins = [cv['x'], g.init(np.ascontiguousarray(cv['w']), 'w')]
  if cv['b'] is not None:
    ins.append(g.init(cv['b'], 'b'))
  attrs = {k: v for k, v in cv['attrs'].items()
           if not (k == 'output_padding' and not any(v))}
  return helper.make_node(cv['op'], ins, [cv['out']], **attrs)

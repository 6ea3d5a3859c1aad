"""Rules that turn flattened jaxpr equations into ONNX nodes.

:class:`Graph` walks :class:`jaxpr_flat.Flat` equations in order and keeps
one :class:`Val` per variable: a constant (numpy, folded eagerly), or an
ONNX tensor with its logical (jaxpr) shape, its stored shape (smaller where
a broadcast was left to ONNX's own broadcasting) and whether a 4-D tensor
is stored NCHW. Convolutions are kept editable until :meth:`Graph.finish`
so that the per-channel affine ops after them fold in.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from onnx import helper

from gcjax.export import onnx_conv
from gcjax.export.jaxpr_flat import Const, Eqn, Flat

NCHW = (0, 3, 1, 2)      # physical axis i holds logical axis NCHW[i].
_ELEMENTWISE = {
    'add': 'Add', 'sub': 'Sub', 'mul': 'Mul', 'div': 'Div', 'max': 'Max',
    'min': 'Min', 'pow': 'Pow', 'neg': 'Neg', 'exp': 'Exp', 'log': 'Log',
    'tanh': 'Tanh', 'logistic': 'Sigmoid', 'sqrt': 'Sqrt', 'abs': 'Abs',
    'sign': 'Sign', 'erf': 'Erf', 'sin': 'Sin', 'cos': 'Cos',
    'floor': 'Floor', 'ceil': 'Ceil', 'ge': 'GreaterOrEqual', 'gt': 'Greater',
    'le': 'LessOrEqual', 'lt': 'Less', 'eq': 'Equal', 'and': 'And',
    'or': 'Or', 'not': 'Not'}
_REDUCE = {'reduce_sum': 'ReduceSum', 'reduce_max': 'ReduceMax',
           'reduce_min': 'ReduceMin', 'reduce_prod': 'ReduceProd'}
_PASS = ('copy', 'copy_p', 'reduce_precision', 'optimization_barrier')


@dataclasses.dataclass
class Val:
  """A value: ``const`` (logical layout) or ONNX tensor ``name``."""
  shape: tuple                  # logical shape (ints or the batch symbol)
  stored: tuple                 # shape actually held, logical axis order
  dtype: np.dtype
  name: str | None = None
  const: np.ndarray | None = None
  nchw: bool = False
  src: tuple = ()               # producer note for peepholes / folding


def _const(a) -> Val:
  a = np.asarray(a)
  return Val(a.shape, a.shape, a.dtype, const=a)


def _is_scalar_const(v: Val) -> bool:
  return v.const is not None and v.const.size == 1


def _bshape(*shapes) -> tuple:
  """Broadcast of stored shapes (same rank, or rank 0)."""
  shapes = [s for s in shapes if len(s)]
  if not shapes:
    return ()
  out = []
  for dims in zip(*shapes):
    big = [d for d in dims if not (isinstance(d, int) and d == 1)]
    out.append(big[0] if big else 1)
  return tuple(out)


class Graph:
  """ONNX nodes for one flattened jaxpr (see the module docstring)."""

  def __init__(self, flat: Flat, transposed: str = 'convtranspose'):
    self.transposed = transposed
    self.flat = flat
    self.uses = flat.uses()
    self.env: dict[int, Val] = {}
    self.nodes: list = []           # NodeProto or dict (a conv to finish)
    self.inits: dict[str, np.ndarray] = {}
    self._n = 0
    self.input_name = ''

  # -- plumbing ------------------------------------------------------------
  def fresh(self, hint: str = 't') -> str:
    self._n += 1
    return f'{hint}_{self._n}'

  def node(self, op: str, inputs, n_out: int = 1, **attrs):
    outs = [self.fresh(op.lower()) for _ in range(n_out)]
    self.nodes.append(helper.make_node(op, list(inputs), outs, **attrs))
    return outs[0] if n_out == 1 else outs

  def init(self, a, hint: str = 'c') -> str:
    name = self.fresh(hint)
    self.inits[name] = np.asarray(a)
    return name

  def ints(self, xs) -> str:
    return self.init(np.asarray(xs, np.int64), 'i')

  def read(self, atom) -> Val:
    return _const(atom.value) if isinstance(atom, Const) else self.env[atom]

  def tensor(self, v: Val, nchw: bool = False) -> str:
    """``v`` as a tensor name, stored NCHW if ``nchw`` and 4-D."""
    four = len(v.stored) == 4
    if v.const is not None:
      a = v.const
      return self.init(a.transpose(NCHW) if nchw and four else a)
    if not four or v.nchw == nchw:
      return v.name
    perm = NCHW if nchw else tuple(np.argsort(NCHW))
    return self.node('Transpose', [v.name], perm=list(perm))

  def shape_tensor(self, dims) -> str:
    """An int64 shape tensor; symbolic dims read the input's batch."""
    if all(isinstance(d, int) for d in dims):
      return self.ints(dims)
    parts = []
    for d in dims:
      if isinstance(d, int):
        parts.append(self.ints([d]))
      else:
        shape = self.node('Shape', [self.input_name], start=0, end=1)
        parts.append(shape)
    return self.node('Concat', parts, axis=0)

  def full(self, v: Val) -> Val:
    """``v`` with stored == logical shape (an Expand where it was lazy)."""
    if v.const is not None:
      if v.const.shape != v.shape:
        if not all(isinstance(d, int) for d in v.shape):
          return self.full(Val(v.shape, v.stored, v.dtype,
                               name=self.tensor(v)))
        return _const(np.broadcast_to(v.const, v.shape).copy())
      return v
    if tuple(v.stored) == tuple(v.shape):
      return v
    shape = [v.shape[i] for i in (NCHW if v.nchw else range(len(v.shape)))]
    name = self.node('Expand', [v.name, self.shape_tensor(shape)])
    return Val(v.shape, v.shape, v.dtype, name=name, nchw=v.nchw)

  def out(self, e: Eqn, v: Val) -> None:
    self.env[e.outputs[0]] = v

  # -- entry points ----------------------------------------------------------
  def bind_input(self, atom: int, name: str) -> None:
    aval = self.flat.avals[atom]
    self.input_name = name
    self.env[atom] = Val(tuple(aval.shape), tuple(aval.shape),
                         np.dtype(aval.dtype), name=name)

  def output(self, atom, name: str):
    v = self.full(self.read(atom))
    self.nodes.append(helper.make_node('Identity', [self.tensor(v)], [name]))
    return self.flat.avals[atom] if isinstance(atom, int) else v

  def apply(self, e: Eqn) -> None:
    """Converts one equation (constants are folded eagerly)."""
    name = e.prim.name
    ins = [self.read(a) for a in e.inputs]
    if name in _PASS:
      for o, v in zip(e.outputs, ins):
        self.env[o] = v
      return
    if name == 'broadcast_in_dim':
      return self.out(e, self.broadcast(ins[0], e))
    if all(v.const is not None for v in ins) and _concrete(e):
      # Consts may be stored smaller than their logical shape (a lazy
      # broadcast): the primitive sees the logical one.
      args = [jnp.asarray(np.broadcast_to(v.const, v.shape)) for v in ins]
      outs = e.prim.bind(*args, **e.params)
      outs = outs if e.prim.multiple_results else [outs]
      for o, r in zip(e.outputs, outs):
        self.env[o] = _const(np.asarray(r))
      return
    rule = getattr(self, f'r_{name}', None)
    if name in ('jit', 'pjit'):
      rule = getattr(self, f'r_{e.params["name"]}', None)
    if rule is not None:
      return self.out(e, rule(e, ins))
    if name in _ELEMENTWISE:
      return self.out(e, self.elementwise(e, ins))
    if name in _REDUCE:
      return self.out(e, self.reduce(e, ins))
    raise NotImplementedError(f'no ONNX rule for the primitive {name!r}')

  def finish(self, outputs):
    """(NodeProtos, initializers) of the live graph (convs finished)."""
    nodes = []
    for n in self.nodes:
      if isinstance(n, dict):
        n = onnx_conv.node(self, n)
      nodes.append(n)
    live, keep = set(outputs), []
    for n in reversed(nodes):
      if any(o in live for o in n.output):
        keep.append(n)
        live.update(i for i in n.input if i)
    keep.reverse()
    return keep, {k: v for k, v in self.inits.items() if k in live}

  # -- elementwise, with folding and peepholes -------------------------------
  def elementwise(self, e: Eqn, ins: list[Val]) -> Val:
    name = e.prim.name
    folded = self.fold_into_conv(e, ins)
    if folded is not None:
      return folded
    if name == 'max' and len(ins) == 2:
      for x, c in ((ins[0], ins[1]), (ins[1], ins[0])):
        if _is_scalar_const(c) and float(c.const) == 0.0 and c.const.ndim == 0:
          return self.unary('Relu', x)
    if name in ('ge', 'gt') and _is_scalar_const(ins[1]) and \
        float(ins[1].const) == 0.0 and isinstance(e.inputs[0], int):
      v = self.nary(_ELEMENTWISE[name], ins, e)
      v.src = ('nonneg', e.inputs[0])
      return v
    if name == 'mul':
      for i in (0, 1):
        c, x = ins[i], ins[1 - i]
        if _is_scalar_const(c) and c.const.ndim == 0 and \
            isinstance(e.inputs[1 - i], int):
          v = self.nary('Mul', ins, e)
          v.src = ('scale', e.inputs[1 - i], float(c.const))
          return v
    return self.nary(_ELEMENTWISE[name], ins, e)

  def nary(self, op: str, ins: list[Val], e: Eqn | None = None,
           **attrs) -> Val:
    nchw = any(v.const is None and v.nchw and len(v.stored) == 4
               for v in ins)
    names = [self.tensor(v, nchw) for v in ins]
    out = self.node(op, names, **attrs)
    shape = tuple(e.out_avals[0].shape) if e else ins[0].shape
    dtype = np.dtype(e.out_avals[0].dtype) if e else ins[0].dtype
    stored = _bshape(*[v.stored for v in ins])
    return Val(shape, stored, dtype, name=out, nchw=nchw and len(shape) == 4)

  def unary(self, op: str, x: Val, **attrs) -> Val:
    return self.nary(op, [x], None, **attrs)

  def fold_into_conv(self, e: Eqn, ins: list[Val]) -> Val | None:
    return onnx_conv.fold(self, e, ins)

  def r_select_n(self, e: Eqn, ins: list[Val]) -> Val:
    if len(ins) != 3:
      raise NotImplementedError('select_n with more than two cases')
    pred, f, t = ins
    xa = e.inputs[2]
    if (pred.src and pred.src[0] == 'nonneg' and pred.src[1] == xa
        and f.src and f.src[0] == 'scale' and f.src[1] == xa):
      return self.unary('LeakyRelu', t, alpha=f.src[2])
    return self.nary('Where', [pred, t, f], e)

  def r_integer_pow(self, e: Eqn, ins: list[Val]) -> Val:
    y = e.params['y']
    if y == 2:
      return self.nary('Mul', [ins[0], ins[0]], e)
    return self.nary('Pow', [ins[0], _const(np.asarray(y, ins[0].dtype))], e)

  def r_square(self, e: Eqn, ins: list[Val]) -> Val:
    return self.nary('Mul', [ins[0], ins[0]], e)

  def r_rsqrt(self, e: Eqn, ins: list[Val]) -> Val:
    return self.unary('Reciprocal', self.unary('Sqrt', ins[0]))

  def r_ne(self, e: Eqn, ins: list[Val]) -> Val:
    return self.unary('Not', self.nary('Equal', ins, e))

  def r_clamp(self, e: Eqn, ins: list[Val]) -> Val:
    lo, x, hi = ins
    return self.nary('Max', [self.nary('Min', [x, hi], e), lo], e)

  def r_convert_element_type(self, e: Eqn, ins: list[Val]) -> Val:
    to = np.dtype(e.params['new_dtype'])
    if to == ins[0].dtype:
      return ins[0]
    v = self.unary('Cast', ins[0], to=helper.np_dtype_to_tensor_dtype(to))
    v.dtype = to
    return v

  # -- shape and layout ------------------------------------------------------
  def logical(self, v: Val) -> Val:
    """``v`` stored in logical (jaxpr) axis order, fully materialized."""
    v = self.full(v)
    if v.const is not None or not v.nchw:
      return v
    return Val(v.shape, v.stored, v.dtype, name=self.tensor(v, False))

  def broadcast(self, x: Val, e: Eqn) -> Val:
    shape, dims = tuple(e.params['shape']), tuple(e.params['broadcast_dimensions'])
    if list(dims) != sorted(dims):
      raise NotImplementedError('broadcast_in_dim with permuted dimensions')
    stored = [1] * len(shape)
    for i, d in enumerate(dims):
      stored[d] = x.stored[i]
    stored = tuple(stored)
    if x.const is not None:
      return Val(shape, stored, x.dtype, const=x.const.reshape(stored))
    x = self.logical(x)
    missing = [d for d in range(len(shape)) if d not in dims]
    name = x.name
    if missing:
      name = self.node('Unsqueeze', [name, self.ints(missing)])
    return Val(shape, stored, x.dtype, name=name)

  def r_reshape(self, e: Eqn, ins: list[Val]) -> Val:
    x = self.logical(ins[0])
    if e.params.get('dimensions'):
      raise NotImplementedError('reshape with dimensions')
    sizes = [d if isinstance(d, int) else -1 for d in e.params['new_sizes']]
    if sizes.count(-1) > 1:
      raise NotImplementedError('reshape with two symbolic dimensions')
    out = tuple(e.out_avals[0].shape)
    name = self.node('Reshape', [self.tensor(x), self.ints(sizes)])
    return Val(out, out, x.dtype, name=name)

  def r_squeeze(self, e: Eqn, ins: list[Val]) -> Val:
    x = self.logical(ins[0])
    out = tuple(e.out_avals[0].shape)
    name = self.node('Squeeze', [self.tensor(x),
                                 self.ints(e.params['dimensions'])])
    return Val(out, out, x.dtype, name=name)

  def r_transpose(self, e: Eqn, ins: list[Val]) -> Val:
    x = self.logical(ins[0])
    out = tuple(e.out_avals[0].shape)
    name = self.node('Transpose', [self.tensor(x)],
                     perm=list(e.params['permutation']))
    return Val(out, out, x.dtype, name=name)

  def _phys(self, vals: list[Val]) -> tuple[bool, tuple]:
    """(NCHW?, physical -> logical axis map) for layout-preserving ops."""
    nchw = any(v.const is None and v.nchw and len(v.shape) == 4
               for v in vals)
    rank = len(vals[0].shape)
    return nchw, (NCHW if nchw else tuple(range(rank)))

  def r_concatenate(self, e: Eqn, ins: list[Val]) -> Val:
    ins = [self.full(v) for v in ins]
    nchw, perm = self._phys(ins)
    axis = perm.index(e.params['dimension'])
    name = self.node('Concat', [self.tensor(v, nchw) for v in ins], axis=axis)
    out = tuple(e.out_avals[0].shape)
    return Val(out, out, ins[0].dtype, name=name, nchw=nchw)

  def r_slice(self, e: Eqn, ins: list[Val]) -> Val:
    x = self.full(ins[0])
    nchw, perm = self._phys([x])
    p = e.params
    strides = p['strides'] or (1,) * len(x.shape)
    name = self.node('Slice', [
        self.tensor(x, nchw), self.ints([p['start_indices'][a] for a in perm]),
        self.ints([p['limit_indices'][a] for a in perm]),
        self.ints(range(len(perm))), self.ints([strides[a] for a in perm])])
    out = tuple(e.out_avals[0].shape)
    return Val(out, out, x.dtype, name=name, nchw=nchw)

  def r_rev(self, e: Eqn, ins: list[Val]) -> Val:
    x = self.full(ins[0])
    nchw, perm = self._phys([x])
    axes = [perm.index(d) for d in e.params['dimensions']]
    big = np.iinfo(np.int64).max
    name = self.node('Slice', [
        self.tensor(x, nchw), self.ints([-1] * len(axes)),
        self.ints([-big] * len(axes)), self.ints(axes),
        self.ints([-1] * len(axes))])
    return Val(x.shape, x.shape, x.dtype, name=name, nchw=nchw)

  def r_pad(self, e: Eqn, ins: list[Val]) -> Val:
    x, value = self.full(ins[0]), ins[1]
    cfg = e.params['padding_config']
    if any(c[2] for c in cfg):
      raise NotImplementedError('pad with interior padding')
    if any(lo < 0 or hi < 0 for lo, hi, _ in cfg):
      raise NotImplementedError('pad with negative padding')
    nchw, perm = self._phys([x])
    pads = [cfg[a][0] for a in perm] + [cfg[a][1] for a in perm]
    name = self.node('Pad', [self.tensor(x, nchw), self.ints(pads),
                             self.tensor(value)], mode='constant')
    out = tuple(e.out_avals[0].shape)
    return Val(out, out, x.dtype, name=name, nchw=nchw)

  def reduce(self, e: Eqn, ins: list[Val]) -> Val:
    x = self.full(ins[0])
    axes = tuple(e.params['axes'])
    nchw, perm = self._phys([x])
    kept = [a for a in perm if a not in axes]
    if kept != sorted(kept):
      x, nchw, perm = self.logical(x), False, tuple(range(len(x.shape)))
    name = self.node(_REDUCE[e.prim.name], [
        self.tensor(x, nchw), self.ints([perm.index(a) for a in axes])],
        keepdims=0)
    out = tuple(e.out_avals[0].shape)
    return Val(out, out, x.dtype, name=name)

  def r_dot_general(self, e: Eqn, ins: list[Val]) -> Val:
    a, b = self.logical(ins[0]), self.logical(ins[1])
    (ca, cb), (ba, bb) = e.params['dimension_numbers']
    out = tuple(e.out_avals[0].shape)
    if (not ba and not bb and tuple(ca) == (len(a.shape) - 1,)
        and tuple(cb) == (0,) and len(b.shape) == 2):
      name = self.node('MatMul', [self.tensor(a), self.tensor(b)])
      return Val(out, out, a.dtype, name=name)
    letters = iter('abcdefghijklmnopqrstuvwxyz')
    la = [next(letters) for _ in a.shape]
    lb = [next(letters) for _ in b.shape]
    for i, j in zip(list(ca) + list(ba), list(cb) + list(bb)):
      lb[j] = la[i]
    batch = [la[i] for i in ba]
    free_a = [la[i] for i in range(len(la)) if i not in ca and i not in ba]
    free_b = [lb[j] for j in range(len(lb)) if j not in cb and j not in bb]
    eq = f'{"".join(la)},{"".join(lb)}->{"".join(batch + free_a + free_b)}'
    name = self.node('Einsum', [self.tensor(a), self.tensor(b)], equation=eq)
    return Val(out, out, a.dtype, name=name)

  def r_stack(self, e: Eqn, ins: list[Val]) -> Val:
    axis = e.params['axis']
    parts = [self.node('Unsqueeze', [self.tensor(self.logical(v)),
                                     self.ints([axis])]) for v in ins]
    out = tuple(e.out_avals[0].shape)
    return Val(out, out, ins[0].dtype, name=self.node('Concat', parts,
                                                       axis=axis))

  def r_gather(self, e: Eqn, ins: list[Val]) -> Val:
    """A gather with constant indices along one axis: ``x[:, i]``,
    ``x[:, i:i + n]`` (a symbolic batch turns slices into gathers) or an
    index map along one axis (nearest-neighbour resizing)."""
    x, idx = self.full(ins[0]), ins[1]
    if idx.const is None:
      raise NotImplementedError('gather with non-constant indices')
    dn, sizes = e.params['dimension_numbers'], tuple(e.params['slice_sizes'])
    if len(dn.start_index_map) != 1 or dn.operand_batching_dims:
      raise NotImplementedError(f'gather {dn}')
    a = dn.start_index_map[0]
    ind = np.asarray(idx.const)
    if ind.shape[-1] != 1:
      raise NotImplementedError(f'gather with index vectors {ind.shape}')
    ind = ind[..., 0].astype(np.int64)
    n = x.shape[a]
    ind = np.clip(ind, 0, n - sizes[a])      # XLA clamps start indices.
    full = all(s == d for i, (s, d) in enumerate(zip(sizes, x.shape))
               if i != a)
    rank = len(x.shape)
    out = tuple(e.out_avals[0].shape)
    nchw, perm = self._phys([x])
    pa = perm.index(a)
    if not full:
      raise NotImplementedError('gather slicing more than one axis')
    if sizes[a] == 1 and tuple(dn.collapsed_slice_dims) == (a,) and \
        ind.ndim == 1 and tuple(dn.offset_dims) == tuple(
            i for i in range(rank) if i != a):
      name = self.node('Gather', [self.tensor(x, nchw), self.ints(ind)],
                       axis=pa)
      return Val(out, out, x.dtype, name=name, nchw=nchw)
    if ind.size == 1 and not dn.collapsed_slice_dims and \
        tuple(dn.offset_dims) == tuple(range(rank)):
      start = int(ind.reshape(()))
      name = self.node('Slice', [self.tensor(x, nchw), self.ints([start]),
                                 self.ints([start + sizes[a]]),
                                 self.ints([pa])])
      return Val(out, out, x.dtype, name=name, nchw=nchw)
    if ind.size == 1 and sizes[a] == 1 and \
        tuple(dn.collapsed_slice_dims) == (a,) and \
        len(dn.offset_dims) == rank - 1:
      name = self.node('Gather', [self.tensor(self.logical(x)),
                                  self.ints(int(ind.reshape(())))], axis=a)
      return Val(out, out, x.dtype, name=name)
    raise NotImplementedError(f'gather {dn} with indices {ind.shape}')

  def r_reduce_window_sum(self, e: Eqn, ins: list[Val]) -> Val:
    """A window sum over H, W (average pooling's numerator): a depthwise
    ``Conv`` with a ones kernel, so that the division after it folds in."""
    x = self.full(ins[0])
    p = e.params
    win, strides = tuple(p['window_dimensions']), tuple(p['window_strides'])
    if len(x.shape) != 4 or win[0] != 1 or win[3] != 1 or \
        strides[0] != 1 or strides[3] != 1 or \
        any(d != 1 for d in p['base_dilation']) or \
        any(d != 1 for d in p['window_dilation']):
      raise NotImplementedError(f'reduce_window_sum {p}')
    c = x.shape[3]
    pad = [tuple(q) for q in p['padding']][1:3]
    w = np.ones((c, 1, win[1], win[2]), x.dtype)
    conv = onnx_conv.add_conv(self, self.tensor(x, True), w, group=c,
                              strides=list(strides[1:3]),
                              kernel_shape=[win[1], win[2]],
                              pads=[q[0] for q in pad] + [q[1] for q in pad])
    out = tuple(e.out_avals[0].shape)
    return Val(out, out, x.dtype, name=conv['out'], nchw=True,
               src=('conv', [conv], 3, c))

  # -- named composites ------------------------------------------------------
  def r_gcjax_reflect_pad(self, e: Eqn, ins: list[Val]) -> Val:
    x = self.full(ins[0])
    out = tuple(e.out_avals[0].shape)
    p = (out[1] - x.shape[1]) // 2
    name = self.node('Pad', [self.tensor(x, True),
                             self.ints([0, 0, p, p, 0, 0, p, p])],
                     mode='reflect')
    return Val(out, out, x.dtype, name=name, nchw=True)

  def r_gcjax_instance_norm(self, e: Eqn, ins: list[Val]) -> Val:
    x, eps = self.full(ins[0]), ins[1]
    if eps.const is None:
      raise NotImplementedError('instance norm with a traced epsilon')
    c = x.shape[3]
    name = self.node('InstanceNormalization', [
        self.tensor(x, True), self.init(np.ones(c, x.dtype)),
        self.init(np.zeros(c, x.dtype))], epsilon=float(eps.const))
    return Val(x.shape, x.shape, x.dtype, name=name, nchw=True)

  # -- convolutions ----------------------------------------------------------
  def r_conv_general_dilated(self, e: Eqn, ins: list[Val]) -> Val:
    return onnx_conv.conv(self, e, ins)


def _concrete(e: Eqn) -> bool:
  return all(all(isinstance(d, int) for d in a.shape) for a in e.out_avals)

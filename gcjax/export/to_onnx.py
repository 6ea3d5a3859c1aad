"""A gcjax network as an ONNX graph, converted from its inference jaxpr.

Why not jax2onnx: its releases pin ``orbax-checkpoint<0.11.37`` (0.17.1,
the current one, checked with ``pip install --dry-run``), which would
downgrade this project's orbax; so gcjax converts the jaxpr itself. The
networks use few primitives, and the converter emits them in the form ONNX
runtimes run fastest:

* the model is traced inside ``layers.dilated_transposed_convs()``, so
  transposed convs are one lhs-dilated conv (-> ``ConvTranspose``) and
  depthwise convs one grouped conv (-> ``Conv`` with ``group``), not the
  sub-pixel / shift-and-add forms that suit XLA:CPU;
* per-channel affine ops right after a conv (inference batch norm, a bias)
  are folded into the conv's weights and bias;
* 4-D tensors live in NCHW inside the graph (onnxruntime's CPU convs are
  NCHW); the graph's input and output keep gcjax's NHWC;
* ``max(x, 0)`` -> ``Relu``, ``where(x >= 0, x, a * x)`` -> ``LeakyRelu``,
  the named composites of ``layers`` -> ``InstanceNormalization`` and
  ``Pad`` (reflect).

Parameters become initializers; with ``batch=None`` the batch dimension is
symbolic (``N``). A primitive without a rule raises ``NotImplementedError``
naming it.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import onnx
from onnx import helper, numpy_helper

from gcjax.export import jaxpr_flat, onnx_conv, onnx_rules
from gcjax.models import layers

OPSET = 18
IR_VERSION = 8   # what onnxruntime >= 1.14 reads.
INPUT, OUTPUT = 'input', 'output'


def trace(apply_fn: Callable, variables, input_shape, input_dtype,
          batch: int | None):
  """(closed jaxpr, flat variable leaves) of ``apply_fn(variables, x)``.

  ``input_shape`` excludes the batch; ``batch=None`` traces a symbolic one.
  """
  if batch is None:
    b, = jax.export.symbolic_shape('N')
  else:
    b = batch
  x = jax.ShapeDtypeStruct((b, *input_shape), np.dtype(input_dtype))
  leaves, treedef = jax.tree.flatten(variables)

  def fn(*args):
    return apply_fn(jax.tree.unflatten(treedef, args[:-1]), args[-1])

  specs = [jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype)
           for v in leaves]
  with layers.dilated_transposed_convs():
    closed = jax.make_jaxpr(fn)(*specs, x)
  return closed, [np.asarray(v) for v in leaves]


def convert(apply_fn: Callable, variables, input_shape, input_dtype='float32',
            batch: int | None = None, name: str = 'gcjax',
            transposed: str = 'convtranspose') -> bytes:
  """Serialized ONNX model computing ``apply_fn(variables, x)``.

  Args:
    apply_fn: ``(variables, x) -> y``, the network in inference form.
    variables: its variable tree (constants of the graph).
    input_shape: ``x``'s shape without the batch, e.g. ``(256, 256, 3)``.
    input_dtype: ``x``'s dtype.
    batch: a fixed batch size, or None for a dynamic one.
    name: the graph's name.
    transposed: the form of transposed convs, one of ``onnx_conv.FORMS``.

  Returns:
    The ``ModelProto`` bytes (input ``input``, output ``output``).
  """
  closed, leaves = trace(apply_fn, variables, input_shape, input_dtype, batch)
  flat = jaxpr_flat.flatten(closed, dict(enumerate(leaves)))
  if len(flat.inputs) != 1 or len(flat.outputs) != 1:
    raise NotImplementedError('only single-input, single-output networks')
  if transposed not in onnx_conv.FORMS:
    raise ValueError(f'transposed must be one of {onnx_conv.FORMS}, got '
                     f'{transposed!r}')
  g = onnx_rules.Graph(flat, transposed)
  x_aval = flat.avals[flat.inputs[0]]
  g.bind_input(flat.inputs[0], INPUT)
  for e in flat.eqns:
    g.apply(e)
  out = g.output(flat.outputs[0], OUTPUT)
  nodes, inits = g.finish([OUTPUT])
  y_aval = out
  graph = helper.make_graph(
      nodes, name,
      [helper.make_tensor_value_info(INPUT, _elem(x_aval.dtype),
                                     _dims(x_aval.shape))],
      [helper.make_tensor_value_info(OUTPUT, _elem(y_aval.dtype),
                                     _dims(y_aval.shape))],
      [numpy_helper.from_array(v, k) for k, v in inits.items()])
  model = helper.make_model(
      graph, opset_imports=[helper.make_opsetid('', OPSET)],
      producer_name='gcjax', ir_version=IR_VERSION)
  onnx.checker.check_model(model)
  return model.SerializeToString()


def _elem(dtype) -> int:
  return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _dims(shape):
  return [d if isinstance(d, int) else 'N' for d in shape]


def op_counts(model_bytes: bytes) -> dict[str, int]:
  """``{op_type: count}`` of a serialized model's nodes."""
  counts: dict[str, int] = {}
  for n in onnx.load_from_string(model_bytes).graph.node:
    counts[n.op_type] = counts.get(n.op_type, 0) + 1
  return counts

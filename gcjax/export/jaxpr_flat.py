"""A jaxpr flattened into one list of primitive equations, for exporters.

Nested calls (``jit``, ``custom_jvp_call``, ``custom_vjp_call``,
``closed_call``, ``remat``) are inlined with fresh variable ids per call
site, so that each value has one producer and a use count, except the
named composites of :mod:`gcjax.models.layers` (``COMPOSITES``), which stay
one equation for the exporter to map onto a single operator.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from jax.extend import core as jcore

from gcjax.models import layers

_CALLS = {
    'jit': 'jaxpr', 'pjit': 'jaxpr', 'closed_call': 'call_jaxpr',
    'core_call': 'call_jaxpr', 'custom_jvp_call': 'call_jaxpr',
    'custom_vjp_call': 'call_jaxpr', 'custom_vjp_call_jaxpr': 'fun_jaxpr',
    'remat': 'jaxpr', 'checkpoint': 'jaxpr'}


@dataclasses.dataclass(frozen=True)
class Const:
  """A compile-time constant operand."""
  value: np.ndarray


@dataclasses.dataclass
class Eqn:
  """One primitive application: inputs are ints (variable ids) or Consts."""
  prim: Any
  inputs: list
  outputs: list[int]
  out_avals: list
  params: dict


@dataclasses.dataclass
class Flat:
  """The flattened program: ``inputs`` and ``outputs`` are ids (or Consts)."""
  inputs: list[int]
  outputs: list
  eqns: list[Eqn]
  avals: dict[int, Any]

  def uses(self) -> dict[int, int]:
    """How many times each id is read (equations and outputs)."""
    n: dict[int, int] = {}
    for e in self.eqns:
      for a in e.inputs:
        if isinstance(a, int):
          n[a] = n.get(a, 0) + 1
    for a in self.outputs:
      if isinstance(a, int):
        n[a] = n.get(a, 0) + 1
    return n


def _closed(j):
  """(jaxpr, consts) of a Jaxpr or ClosedJaxpr."""
  if hasattr(j, 'jaxpr'):
    return j.jaxpr, list(j.consts)
  return j, []


def flatten(closed_jaxpr, const_args: dict[int, np.ndarray]) -> Flat:
  """Flattens ``closed_jaxpr``; invars at positions in ``const_args`` are
  bound to those constants (the parameters), the others are inputs."""
  counter = iter(range(1 << 62))
  avals: dict[int, Any] = {}
  eqns: list[Eqn] = []

  def fresh(aval) -> int:
    i = next(counter)
    avals[i] = aval
    return i

  def read(env, atom):
    if isinstance(atom, jcore.Literal):
      return Const(np.asarray(atom.val))
    return env[atom]

  def run(jaxpr, consts, args):
    env = {}
    for v, c in zip(jaxpr.constvars, consts):
      env[v] = Const(np.asarray(c))
    for v, a in zip(jaxpr.invars, args):
      env[v] = a
    for e in jaxpr.eqns:
      ins = [read(env, a) for a in e.invars]
      name = e.primitive.name
      if name in _CALLS and e.params.get('name') not in layers.COMPOSITES:
        sub, sub_consts = _closed(e.params[_CALLS[name]])
        if name == 'custom_vjp_call' and 'call_jaxpr' not in e.params:
          sub, sub_consts = _closed(e.params['fun_jaxpr'])
        outs = run(sub, sub_consts, ins)
      else:
        outs = [fresh(v.aval) for v in e.outvars]
        eqns.append(Eqn(e.primitive, ins, outs,
                        [v.aval for v in e.outvars], dict(e.params)))
      for v, o in zip(e.outvars, outs):
        env[v] = o
    return [read(env, a) for a in jaxpr.outvars]

  jaxpr, consts = _closed(closed_jaxpr)
  args, inputs = [], []
  for i, v in enumerate(jaxpr.invars):
    if i in const_args:
      args.append(Const(np.asarray(const_args[i])))
    else:
      args.append(fresh(v.aval))
      inputs.append(args[-1])
  outputs = run(jaxpr, consts, args)
  return Flat(inputs, outputs, eqns, avals)

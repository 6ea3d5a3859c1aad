"""``cost``: parameters, MACs (true and the literature's convention), XLA's
flop count and latency at batch 1 and ``latency_batch`` of the finished
networks (``Method.finalize``): ``pred`` names them (``()``: every network
that has a predict function of the same name). A network whose kernels
hold exact zeros (fine-grained pruning) also gets ``macs_nonzero``, the
true MACs that multiply a nonzero weight."""

from __future__ import annotations

import jax
import numpy as np

from gcjax import errors
from gcjax.evaluators import common


class Evaluator:

  def __init__(self, names: common.Names, *, pred=(), latency_batch: int = 8,
               latency_iters: int = 10):
    self.pred = common.as_tuple(pred)
    self.names = names
    self.latency_batch = latency_batch
    self.latency_iters = latency_iters

  def run(self, ctx: common.Context, seed: int):
    del seed
    from gcjax.metrics import cost
    nets = ctx.networks()
    pred = self.pred or tuple(n for n in self.names.predict if n in nets)
    bad = [p for p in pred if p not in nets]
    if bad:
      raise errors.UserError(f'cost: pred {bad} are not finished networks '
                             f'of this method; it has {sorted(nets)}')
    res = {}
    for name in pred:
      net = nets[name]
      x1 = np.zeros((1, *net.input_shape), net.input_dtype)
      fwd = lambda v, x, net=net: net.fwd(v, x)
      macs = cost.count_macs(fwd, net.variables, x1)
      r = {'params': cost.count_params(net.variables),
           'macs_true': macs['true'], 'macs_literature': macs['literature'],
           'flops_xla': cost.xla_flops(fwd, net.variables, x1)}
      nonzero = cost.count_nonzero_macs(fwd, net.variables, x1)
      if nonzero < macs['true']:
        # Zeros in the kernels (fine-grained pruning): the theoretical
        # count; dense kernels run no faster.
        r['macs_nonzero'] = nonzero
      jf = jax.jit(fwd)
      for b in (1, self.latency_batch):
        xb = np.zeros((b, *net.input_shape), net.input_dtype)
        lat = cost.measure_latency(jf, (net.variables, xb),
                                   n_iters=self.latency_iters)
        r[f'latency_ms_b{b}'] = 1e3 * lat['median_s']
      res[name] = r
    return res

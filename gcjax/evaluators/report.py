"""The results table: flat scalars for TensorBoard, markdown for people."""

from __future__ import annotations


def flatten(results) -> dict[str, float]:
  return {f'eval/{m}/{k}': v for m, vals in results.items()
          if not m.startswith('_') for k, v in vals.items()
          if isinstance(v, (int, float))}


def _si(v: float) -> str:
  """1234567 -> '1.235M' (G/M/k units)."""
  for unit, scale in (('G', 1e9), ('M', 1e6), ('k', 1e3)):
    if abs(v) >= scale:
      return f'{v / scale:.3f}{unit}'
  return f'{v:.0f}'


_COLUMNS = [
    ('params', 'params', _si),
    ('macs_literature', 'MACs (lit.)', _si),
    ('macs_true', 'MACs (true)', _si),
    ('macs_nonzero', 'MACs (nonzero weights)', _si),
    ('flops_xla', 'XLA flops/2', lambda v: _si(v / 2)),
]


def to_markdown(results, title: str) -> str:
  """The results table: one row per model, cost columns first."""
  models = [m for m in results if not m.startswith('_')]
  keys = []
  for m in models:
    for k in results[m]:
      if k not in keys:
        keys.append(k)
  fixed = [c for c in _COLUMNS if c[0] in keys]
  rest = [k for k in keys if k not in {c[0] for c in _COLUMNS}]
  head = ['model'] + [c[1] for c in fixed] + rest
  lines = [f'# {title}', '', '| ' + ' | '.join(head) + ' |',
           '|' + '---|' * len(head)]
  for m in models:
    row = [m]
    for key, _, fmt in fixed:
      v = results[m].get(key)
      row.append(fmt(v) if v is not None else '')
    for k in rest:
      v = results[m].get(k)
      row.append('' if v is None else (f'{v:.4g}' if isinstance(v, float)
                                       else str(v)))
    lines.append('| ' + ' | '.join(row) + ' |')
  run = results.get('_run')
  if run:
    lines += ['', 'MACs (lit.): the torchprofile convention used by the '
              'papers (a stride-2 transposed conv charged per output '
              'element). MACs (true): multiply-adds actually needed. '
              + ('MACs (nonzero weights): the true MACs whose weight is '
                 'not zero, the theoretical saving of fine-grained '
                 'sparsity; dense kernels with zeros run no faster (the '
                 'latency column shows it). '
                 if 'macs_nonzero' in keys else '') +
              'XLA flops/2: XLA\'s cost analysis, which skips the taps '
              'that fall on zero padding (well under the MAC counts on '
              'small feature maps: 25% of them for a 4x4 stride-2 conv on '
              'a 2x2 map, 97% on 64x64). Latency: median of timed calls after warm-up on '
              f"{run.get('platform')}.", '',
              '```', *(f'{k}: {v}' for k, v in run.items()
                       if k != 'last_losses'), '```']
  return '\n'.join(lines) + '\n'

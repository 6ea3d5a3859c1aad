"""``python -m gcjax.export --workdir=RUN``: deployable exports of a run.

Flags:
  --workdir: a finished run (or its ``export/`` folder).
  --net: the exported network (default: the run's only one, or its
    ``student`` / ``generator``).
  --format: comma-separated subset of ``onnx,stablehlo``.
  --batch: ``dynamic`` (a symbolic batch) or a fixed batch size.
  --out: the deploy folder (default ``<workdir>/deploy``).
  --transposed: ONNX form of transposed convs (``convtranspose``, the
    default, ``phases``, ``one_conv``; see ``gcjax/export/onnx_conv.py``).
  --tol: largest max abs error against JAX accepted (float32).

Each export is checked before it is written (``verify.build``); one that
misses prints one line saying by how much and exits with status 1, and
nothing is written. ``<out>/card.json`` gains the network's entry.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags, logging

from gcjax import cli, errors

_WORKDIR = flags.DEFINE_string('workdir', None, 'A finished gcjax run.')
_NET = flags.DEFINE_string('net', '', 'Network name (default: the student).')
_FORMAT = flags.DEFINE_string('format', 'onnx,stablehlo',
                              'Comma-separated: onnx, stablehlo.')
_BATCH = flags.DEFINE_string('batch', 'dynamic', "'dynamic' or a batch size.")
_OUT = flags.DEFINE_string('out', None, 'Deploy folder (<workdir>/deploy).')
_TRANSPOSED = flags.DEFINE_string('transposed', 'convtranspose',
                                  'ONNX transposed-conv form.')
_TOL = flags.DEFINE_float('tol', 1e-4, 'Max abs error accepted.')


def _batch(text: str) -> int | None:
  if text == 'dynamic':
    return None
  try:
    b = int(text)
  except ValueError:
    b = 0
  if b < 1:
    raise errors.UserError(f"--batch={text}: expected 'dynamic' or a "
                           'positive integer')
  return b


def _write(path: str, data: bytes) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


def main(argv) -> None:
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  from gcjax import deployed, export, teachers
  from gcjax.export import onnx_conv, verify
  formats = [f for f in _FORMAT.value.split(',') if f]
  bad = [f for f in formats if f not in verify.FORMATS]
  if bad or not formats:
    raise errors.UserError(f'--format={_FORMAT.value}: expected a '
                           f'comma-separated subset of {verify.FORMATS}')
  if _TRANSPOSED.value not in onnx_conv.FORMS:
    raise errors.UserError(f'--transposed={_TRANSPOSED.value}: expected one '
                           f'of {onnx_conv.FORMS}')
  batch = _batch(_BATCH.value)
  rest = _WORKDIR.value + (f':{_NET.value}' if _NET.value else '')
  spec = f'--workdir={_WORKDIR.value}' + (
      f' --net={_NET.value}' if _NET.value else '')
  src_dir, net, entry = teachers.find_run_network(rest, spec)
  module, variables = teachers.load(f'run:{rest}')
  shape = tuple(entry['input_shape'])
  dtype = entry.get('input_dtype', 'float32')
  try:
    built = verify.build(module, variables, shape, dtype, formats, batch,
                         _TRANSPOSED.value, _TOL.value)
  except verify.CheckFailed as e:
    cli.fail_status('gcjax.export', str(e), 1)
  out = _OUT.value or os.path.join(_WORKDIR.value, 'deploy')
  os.makedirs(out, exist_ok=True)
  card_path = os.path.join(out, deployed.CARD)
  card = deployed.read_card(out) if os.path.isfile(card_path) else {
      'networks': {}}
  src_npz = os.path.join(src_dir, entry['file'])
  with open(src_npz, 'rb') as f:
    src_digest = verify.sha256(f.read())
  kind = verify.input_kind(shape)
  files = dict(card['networks'].get(net, {}).get('files', {}))
  for fmt, (blob, info) in built.items():
    name = f'{net}.onnx' if fmt == 'onnx' else f'{net}.stablehlo'
    _write(os.path.join(out, name), blob)
    files[fmt] = {'file': name, 'sha256': verify.sha256(blob),
                  'bytes': len(blob), **info}
    if fmt == 'stablehlo':
      params = f'{net}.stablehlo.npz'
      export.save_variables(os.path.join(out, params), variables)
      with open(os.path.join(out, params), 'rb') as f:
        files[fmt]['params'] = params
        files[fmt]['params_sha256'] = verify.sha256(f.read())
    print(f'gcjax.export: {os.path.join(out, name)} (max abs error '
          f'{info["check"]["max_abs_err"]:.2g} at batch '
          f'{info["check"]["batches"]})')
  card['networks'][net] = {
      'class': entry['class'], 'fields': entry['fields'],
      'input': {'name': 'input', 'shape': ['N' if batch is None else batch,
                                           *shape],
                'dtype': dtype, 'kind': kind,
                'layout': 'NHWC' if kind == 'image' else 'NC',
                'range': [-1.0, 1.0] if kind == 'image' else 'normal(0, 1)'},
      'output': {'name': 'output', 'layout': 'NHWC', 'range': [-1.0, 1.0]},
      'source': {'run': os.path.abspath(_WORKDIR.value), 'net': net,
                 'npz': os.path.abspath(src_npz), 'npz_sha256': src_digest},
      'files': files}
  tmp = card_path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(card, f, indent=2)
  os.replace(tmp, card_path)
  print(f'gcjax.export: card {card_path}', file=sys.stderr)


if __name__ == '__main__':
  flags.mark_flag_as_required('workdir')
  cli.run(main, 'gcjax.export')

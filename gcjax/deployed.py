"""Reads a deploy folder written by ``python -m gcjax.export``. No JAX.

A deploy folder holds ``card.json`` and, per network, ``<net>.onnx``,
``<net>.stablehlo`` and ``<net>.stablehlo.npz`` (the StableHLO artifact's
parameters). The card records, per network, its input and output (shape,
dtype, layout, value range, kind), the source run and, per file, its
SHA-256 digest and the figures of the check made before it was written.
Every file is read through :func:`read_verified`, which refuses one whose
digest differs from the card's. Needs only numpy (and onnxruntime for
:func:`onnx_session`), so ``gcjax.generate`` runs without JAX.
"""

from __future__ import annotations

import hashlib
import json
import os

from gcjax import errors

CARD = 'card.json'
DEFAULT_NETS = ('student', 'generator')


def read_card(folder: str) -> dict:
  """The card of deploy folder ``folder``."""
  path = os.path.join(folder, CARD)
  if not os.path.isfile(path):
    raise errors.UserError(f'{folder!r} has no {CARD}; export a run first '
                           '(python -m gcjax.export --workdir=RUN)')
  with open(path) as f:
    try:
      card = json.load(f)
    except json.JSONDecodeError as e:
      raise errors.UserError(f'{path}: not valid JSON ({e})') from e
  if not isinstance(card.get('networks'), dict):
    raise errors.UserError(f'{path}: not a gcjax deploy card (no networks)')
  return card


def find(model: str, net: str = '', fmt: str = 'onnx'):
  """``(folder, net, entry)`` for ``model``: a deploy folder or a file in one.

  ``net`` may be left out when the folder holds one network, or a
  ``student`` / ``generator``; a file path picks the network that owns it.
  """
  folder, name = (model, '') if os.path.isdir(model) else \
      (os.path.dirname(model) or '.', os.path.basename(model))
  nets = read_card(folder)['networks']
  if name:
    owners = [n for n, e in nets.items()
              if any(f.get('file') == name for f in e['files'].values())]
    if not owners:
      raise errors.UserError(f'{model}: the card in {folder!r} lists no file '
                             f'{name!r}')
    net = owners[0]
  if not net:
    net = next(iter(nets)) if len(nets) == 1 else next(
        (n for n in DEFAULT_NETS if n in nets), '')
    if not net:
      raise errors.UserError(f'{model}: holds {sorted(nets)}; name one with '
                             '--net')
  if net not in nets:
    raise errors.UserError(f'{model}: no network {net!r}; it has '
                           f'{sorted(nets)}')
  if fmt not in nets[net]['files']:
    raise errors.UserError(f'{model}: network {net!r} has no {fmt} export; '
                           f'it has {sorted(nets[net]["files"])}')
  return folder, net, nets[net]


def read_verified(folder: str, file: str, digest: str) -> bytes:
  """The bytes of ``folder/file`` if their SHA-256 is ``digest``."""
  path = os.path.join(folder, file)
  with open(path, 'rb') as f:
    data = f.read()
  got = hashlib.sha256(data).hexdigest()
  if got != digest:
    raise errors.UserError(
        f'{path}: SHA-256 {got[:16]}... differs from the card\'s '
        f'{digest[:16]}...; the file changed after it was exported and '
        'checked. Re-export it (python -m gcjax.export).')
  return data


def onnx_session(model: str, net: str = '', threads: int = 0):
  """``(onnxruntime session, card entry)`` of a digest-checked ONNX export."""
  import onnxruntime as ort
  folder, _, entry = find(model, net, 'onnx')
  f = entry['files']['onnx']
  blob = read_verified(folder, f['file'], f['sha256'])
  opts = ort.SessionOptions()
  opts.log_severity_level = 3
  if threads:
    opts.intra_op_num_threads = threads
  return ort.InferenceSession(blob, opts,
                              providers=['CPUExecutionProvider']), entry

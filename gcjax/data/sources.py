"""Random-access record sources and per-record transforms for streaming.

The streaming input (`gcjax.data.streaming`) reads one split as one or more
*streams*; each stream is a grain random-access source of undecoded records
plus the transforms that turn a record into a dict of uint8 arrays. Sources
hold only names (file paths, ArrayRecord offsets), never pixels, so memory
does not grow with the data set. Decoding runs in the transforms, i.e. in
grain's worker processes when `data.workers` > 0.

A record that cannot be decoded becomes ``{BAD: 'what and why'}`` instead of
raising in the worker; the batcher then applies ``data.on_bad_example``.

| data.name        | streams                | record keys      |
| ---------------- | ---------------------- | ---------------- |
| paired_folder    | one (file list)        | src, tgt         |
| unpaired_folders | a, b (file lists)      | a / b            |
| tfds             | one (ArrayRecord)      | as `keys` says   |
| tfds_unpaired    | a, b (ArrayRecord)     | a / b            |
| anything else    | one (its loaded rows)  | the loader's keys|
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import grain.python as grain
import numpy as np

from gcjax import errors
from gcjax.data import folders

BAD = '_bad'          # key of an undecodable record's description
Record = dict[str, Any]


class FileList(grain.RandomAccessDataSource):
  """Paths of image files; decoding is left to `DecodeFolder`."""

  def __init__(self, paths: Sequence[str]):
    self.paths = list(paths)

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> str:
    return self.paths[index]

  def __repr__(self) -> str:  # grain checks it on restore; no pointers
    return f'FileList({len(self.paths)} files in {_folder(self.paths)})'


class Rows(grain.RandomAccessDataSource):
  """Rows of in-memory arrays (the embedded sets), one dict per row."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    self.n = len(next(iter(self.arrays.values())))

  def __len__(self) -> int:
    return self.n

  def __getitem__(self, index: int) -> Record:
    return {k: v[index] for k, v in self.arrays.items()}

  def __repr__(self) -> str:
    shapes = {k: v.shape for k, v in sorted(self.arrays.items())}
    return f'Rows({shapes})'


class Tolerant(grain.RandomAccessDataSource):
  """Wraps a source whose reads decode (TFDS): a failing read is BAD."""

  def __init__(self, source: Any, name: str):
    self.source = source
    self.name = name

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> Any:
    try:
      return self.source[index]
    except Exception as e:  # noqa: BLE001 - reported per record.
      return {BAD: f'{self.name} record {index}: cannot decode it '
                   f'({" ".join(str(e).split())[:200]})'}

  def __repr__(self) -> str:
    return f'Tolerant({self.name}, {len(self)} records)'


@dataclasses.dataclass(frozen=True)
class DecodeFolder(grain.MapTransform):
  """Path -> {'src', 'tgt'} (pix2pix A|B file) or {key: image}."""

  resolution: int
  key: str = ''               # '' : paired A|B; else the image's key
  direction: str = 'AtoB'

  def map(self, path: str) -> Record:
    try:
      image = folders.read_rgb(path)
      if self.key:
        return {self.key: _resize(image, self.resolution)}
      width, height = image.size
      if width % 2:
        raise errors.UserError(f'{path}: width {width} is odd; a pix2pix '
                               'aligned image is A|B side by side')
      half = width // 2
      left = _resize(image.crop((0, 0, half, height)), self.resolution)
      right = _resize(image.crop((half, 0, width, height)), self.resolution)
    except errors.UserError as e:
      return {BAD: str(e)}
    if self.direction == 'AtoB':
      return {'src': left, 'tgt': right}
    return {'src': right, 'tgt': left}


def _resize(image, resolution: int) -> np.ndarray:
  return folders._resize(image, resolution)  # noqa: SLF001 - same package.


@dataclasses.dataclass(frozen=True)
class SelectTfds(grain.MapTransform):
  """A decoded TFDS example -> {out key: uint8 image or value}."""

  keys: tuple[tuple[str, str], ...]
  resolution: int
  channels: int | None = 3

  def map(self, example: Any) -> Record:
    if isinstance(example, Mapping) and BAD in example:
      return dict(example)
    from gcjax.data import tfds
    out = {}
    try:
      for out_key, feature_key in self.keys:
        value = np.asarray(tfds._feature(example, feature_key))  # noqa: SLF001
        if value.ndim >= 2:
          value = tfds._image(value, feature_key, self.resolution,  # noqa: SLF001
                              self.channels)
        out[out_key] = value
    except (KeyError, ValueError) as e:
      return {BAD: f'TFDS example: {e}'}
    return out


@dataclasses.dataclass(frozen=True)
class Augment(grain.RandomMapTransform):
  """Same flip / jitter for every image of a record (pairs stay aligned).

  As in `pipeline.Batcher`: `flip` mirrors left-right with probability 1/2;
  `jitter` pads by that many pixels (reflect) and crops at a random offset.
  grain seeds the generator from the data seed and the record's position.
  """

  flip: bool
  jitter: int

  def random_map(self, record: Record, rng: np.random.Generator) -> Record:
    if BAD in record:
      return record
    flip = rng.random() < 0.5
    dy, dx = rng.integers(0, 2 * self.jitter + 1, 2)
    out = {}
    for k, x in record.items():
      if np.ndim(x) == 3 and np.asarray(x).dtype == np.uint8:
        if self.flip and flip:
          x = x[:, ::-1]
        if self.jitter:
          j, (h, w) = self.jitter, x.shape[:2]
          x = np.pad(x, ((j, j), (j, j), (0, 0)), mode='reflect')
          x = x[dy:dy + h, dx:dx + w]
        x = np.ascontiguousarray(x)
      out[k] = x
    return out


@dataclasses.dataclass
class Stream:
  """One random-access source and the transforms that decode its records."""

  source: Any
  decode: tuple = ()


def _limited(paths: list[str], limit: int) -> list[str]:
  return paths[:limit] if limit > 0 else paths


def _tfds_source(name: str, split: str, data_dir: str | None) -> Any:
  from gcjax.data import tfds as tfds_lib
  tfds = tfds_lib.import_tfds()
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception as e:  # DatasetNotFoundError and friends.
    raise FileNotFoundError(f'TFDS data set {name!r} not found in '
                            f'data_dir={data_dir!r}: '
                            f'{str(e).splitlines()[0]}') from e
  file_format = str(getattr(builder.info.file_format, 'value',
                            builder.info.file_format))
  if not builder.is_prepared() or file_format != 'array_record':
    raise errors.UserError(
        f'data.streaming reads TFDS set {name!r} from ArrayRecord files; it '
        f'is {"not prepared" if not builder.is_prepared() else file_format}'
        f' in {builder.data_dir} (prepare it with `tfds build {name} '
        '--file_format=array_record`)')
  return builder.as_data_source(split=split)


class _Slice(grain.RandomAccessDataSource):
  def __init__(self, source: Any, n: int):
    self.source, self.n = source, min(n, len(source))

  def __len__(self) -> int:
    return self.n

  def __getitem__(self, index: int) -> Any:
    return self.source[index]

  def __repr__(self) -> str:
    return f'_Slice({self.n})'


def _folder(paths: Sequence[str]) -> str:
  return os.path.dirname(paths[0]) if paths else '-'


def _tfds_stream(name: str, split: str, keys: Mapping[str, str],
                 resolution: int, data_dir: str | None, limit: int,
                 channels: int | None) -> Stream:
  source = _tfds_source(name, split, data_dir)
  if limit > 0:
    source = _Slice(source, limit)
  return Stream(Tolerant(source, f'TFDS {name}[{split}]'),
                (SelectTfds(tuple(sorted(keys.items())), resolution,
                            channels),))


def streams(name: str, split: str, args: Mapping[str, Any],
            limit: int) -> dict[str, Stream]:
  """The streams of a split: one for aligned data, one per domain else.

  Args:
    name: `config.data.name`.
    split: the split to read.
    args: `config.data.args` as a dict.
    limit: > 0 reads only the first `limit` examples (in stored order).

  Returns:
    stream name -> Stream; aligned data has one stream named 'rows'.
  """
  args = dict(args)
  res = int(args.get('resolution', 256))
  if name == 'paired_folder':
    path = args['path']
    if not os.path.isdir(path):
      raise FileNotFoundError(f'paired dataset folder {path} does not exist;'
                              ' set data.args.path')
    folder = os.path.join(path, split)
    paths = folders.list_images(folder if os.path.isdir(folder) else path)
    lim = int(args.get('limit', -1))
    paths = _limited(paths[:lim] if lim >= 0 else paths, limit)
    return {'rows': Stream(FileList(paths), (DecodeFolder(
        res, direction=args.get('direction', 'AtoB')),))}
  if name == 'unpaired_folders':
    out = {}
    for key, side in (('a', 'A'), ('b', 'B')):
      paths = folders.list_images(os.path.join(args['root'], f'{split}{side}'))
      lim = int(args.get('limit', -1))
      paths = _limited(paths[:lim] if lim >= 0 else paths, limit)
      out[key] = Stream(FileList(paths), (DecodeFolder(res, key=key),))
    return out
  if name in ('tfds', 'tfds_unpaired'):
    tfds_name = args.get('tfds_name') or args.get('name')
    data_dir = args.get('data_dir') or None
    lim = int(args.get('limit', -1))
    limit = min(x for x in (limit, lim) if x > 0) if max(limit, lim) > 0 \
        else 0
    if name == 'tfds':
      return {'rows': _tfds_stream(
          tfds_name, split, args['keys'], res, data_dir, limit,
          args.get('channels', 3))}
    feature = args.get('feature', 'image')
    return {k: _tfds_stream(tfds_name, f'{split}{k.upper()}', {k: feature},
                            res, data_dir, limit, 3) for k in ('a', 'b')}
  from gcjax import data as data_lib
  arrays = data_lib.load(name, split, **args)
  if limit > 0:
    arrays = {k: v[:limit] for k, v in arrays.items()}
  return {'rows': Stream(Rows(arrays))}


def decoded_bytes(name: str, split: str, args: Mapping[str, Any],
                  limit: int) -> int:
  """Bytes a split takes decoded in memory (uint8), without decoding it.

  Image folders and TFDS sets are sized from their file count / split size
  and `args.resolution`; the embedded sets (small by construction) are 0.
  """
  res = int(dict(args).get('resolution', 256))
  if name not in ('paired_folder', 'unpaired_folders', 'tfds',
                  'tfds_unpaired'):
    return 0
  if name in ('paired_folder', 'unpaired_folders'):
    s = streams(name, split, args, limit)
    per = 2 if name == 'paired_folder' else 1
    return sum(len(x.source) for x in s.values()) * per * res * res * 3
  s = streams(name, split, args, limit)
  keys = len(dict(args).get('keys', {'x': 0})) if name == 'tfds' else 1
  return sum(len(x.source) for x in s.values()) * keys * res * res * 3

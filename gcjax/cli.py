"""Runs a command-line ``main`` with one-line reports of bad input.

``gcjax.main``, ``gcjax.stats`` and the experiment scripts call
:func:`run` instead of ``absl.app.run``. Bad input (an unknown flag, a
config file, preset or key that does not exist, a value of the wrong type,
and :data:`gcjax.errors.USER_ERRORS` raised while running: a missing
dataset, an unreadable image, a checkpoint of another config) prints one
line ``<prog>: error: <what is wrong and how to fix it>`` to stderr and
exits with status 2. Anything else is an internal error and keeps its
traceback; ``--verbose`` shows tracebacks for bad input too.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import app, flags

from gcjax import errors

_VERBOSE = flags.DEFINE_bool(
    'verbose', False, 'Show the traceback of bad-input errors too (they '
    'are reported as one line otherwise).')
# Set where ml_collections wraps an exception raised by a config file.
_CONFIG_WRAPPER = 'Error whilst parsing config file'


def _verbose_in(argv: Sequence[str]) -> bool:
  """Whether ``--verbose`` is on the command line (before flags parse)."""
  on = False
  for a in argv[1:]:
    if a == '--':
      break
    if a in ('--verbose', '-verbose') or a.startswith(
        ('--verbose=t', '--verbose=T', '--verbose=1')):
      on = True
    elif a in ('--noverbose', '-noverbose') or a.startswith('--verbose='):
      on = False
  return on


def one_line(text: str) -> str:
  """``text`` with its lines and runs of spaces joined by single spaces."""
  return ' '.join(str(text).split())


def fail(prog: str, message: str) -> None:
  """Prints ``<prog>: error: <message>`` as one line; exits with status 2."""
  fail_status(prog, message, 2)


def fail_status(prog: str, message: str, status: int) -> None:
  """Prints ``<prog>: error: <message>`` as one line; exits with ``status``."""
  print(f'{prog}: error: {one_line(message)}', file=sys.stderr)
  sys.exit(status)


def _chain(e: BaseException):
  """``e`` and the exceptions it was raised from or during, outermost first."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def _user_error_in(e: BaseException) -> BaseException | None:
  """The innermost USER_ERRORS exception behind ``e`` (None: none)."""
  found = None
  for x in _chain(e):
    if isinstance(x, errors.USER_ERRORS) and _CONFIG_WRAPPER not in str(x):
      found = x
  return found


def _config_flags() -> list[str]:
  """Names of the ml_collections config-file flags that are defined."""
  from ml_collections.config_flags import config_flags as cf
  return [name for name in flags.FLAGS
          if isinstance(flags.FLAGS[name].parser, cf.ConfigFileFlagParser)]


def _check_config_files() -> None:
  """A missing config file would only fail at first use: fail now."""
  from ml_collections import config_flags
  for name in _config_flags():
    flag = flags.FLAGS[name]
    if flag.value is None:
      continue
    path = config_flags.get_config_filename(flag).split(':', 1)[0]
    if not os.path.isfile(path):
      raise errors.UserError(
          f'--{name}={flag.serialize().split("=", 1)[-1]}: no config file '
          f'{path!r}; give --{name}=configs/NAME.py[:preset] (relative to '
          'the current directory)')


def _field(dotted: str):
  """The current value of config override ``dotted`` (``config.a.b``)."""
  node = flags.FLAGS[dotted.split('.', 1)[0]].value
  for part in dotted.split('.')[1:]:
    node = node[part]
  return node


def _bad_value(e: flags.Error) -> str:
  """The flag error ``e``, plus the expected type for a config override."""
  match = re.match(r'flag --([\w.]+)=', str(e))
  if match and '.' in match.group(1):
    try:
      value = _field(match.group(1))
    except Exception:  # noqa: BLE001 - no hint then.
      return str(e)
    kind = type(value).__name__
    article = 'an' if kind[0] in 'aeiou' else 'a'
    return (f'{e}; --{match.group(1)} takes {article} {kind} (default '
            f'{value!r})')
  return f'{e} (see --helpfull)'


def _unknown_key(e: Exception, argv: Sequence[str]) -> str | None:
  """A one-line message for an override of a key the config lacks.

  None if no ``--a.b=...`` argument names the missing key (then the error
  came from elsewhere, e.g. a bug in a config file).
  """
  inner = [x for x in _chain(e) if isinstance(x, KeyError)] or [e]
  args = inner[0].args
  text = one_line(args[0] if args and isinstance(args[0], str) else e)
  key = re.match(r"""'([^']*)'""", text)
  arg = ''
  if key:
    arg = next((a.split('=', 1)[0] for a in argv if a.startswith('--')
                and '.' in a.split('=', 1)[0]
                and key.group(1) in a.split('=', 1)[0].split('.')), '')
  if not arg:
    return None
  return (f'{arg}: the config has no key {text} (overrides can only set '
          'keys the config file defines)')


def _parse_flags(prog: str, verbose: bool):
  """An ``app.run`` flags parser that reports bad flags as one line."""
  def parse(argv: list[str]) -> list[str]:
    try:
      rest = flags.FLAGS(argv)
      _check_config_files()
      return rest
    except (flags.Error, *errors.USER_ERRORS) as e:
      if verbose:
        raise
      inner = _user_error_in(e)
      if inner is not None:
        fail(prog, str(inner))
      if _CONFIG_WRAPPER in str(e):
        raise  # A bug in the config file itself: keep its traceback.
      fail(prog, _bad_value(e))
    except (AttributeError, KeyError) as e:
      # ml_collections: an override of a key that the config does not have.
      message = _unknown_key(e, argv)
      if verbose or message is None:
        raise
      fail(prog, message)
  return parse


def run(main: Callable[[list[str]], Any], prog: str | None = None,
        argv: Sequence[str] | None = None,
        defaults: Sequence[str] = ()) -> None:
  """``absl.app.run(main)`` with bad input reported as one line, exit 2.

  Args:
    main: the program; it receives the arguments left after the flags.
    prog: the name in error lines (default: the script's file name).
    argv: the command line (default ``sys.argv``).
    defaults: ``--name=value`` arguments added unless the command line sets
      ``--name``. Use this for config-file flags rather than a
      ``DEFINE_config_file`` default: ml_collections parses a default (and
      its ``--name.*`` overrides) when the flag is defined, outside this
      function's error handling.
  """
  argv = list(sys.argv if argv is None else argv)
  for arg in defaults:
    name = arg.split('=', 1)[0]
    if not any(a == name or a.startswith(name + '=') for a in argv[1:]):
      argv.insert(1, arg)
  prog = prog or os.path.basename(argv[0])
  verbose = _verbose_in(argv)

  def guarded(args):
    try:
      return main(args)
    except errors.USER_ERRORS as e:
      if verbose or _VERBOSE.value:
        raise
      fail(prog, str(e))

  app.run(guarded, argv=argv, flags_parser=_parse_flags(prog, verbose))

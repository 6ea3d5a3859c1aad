"""Errors a user can fix by changing their input (config, files, flags).

``gcjax.main`` and the other commands print these as one line naming the
problem and the fix and exit with status 2; anything else is an internal
error and keeps its traceback. ``UserError`` is a ``ValueError`` so callers
that catch bad values keep working.
"""


class UserError(ValueError):
  """Bad input: a config value, a file, a flag. The message names it and
  says what was expected."""


# What the command line reports as one line (exit 2): bad values and the
# missing or unreadable input files behind them.
USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError,
               IsADirectoryError, PermissionError)

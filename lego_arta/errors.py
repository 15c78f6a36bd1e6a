"""The project's user-facing errors: one base class, so entry scripts can tell a user's mistake from a bug.

A :class:`UserError` is about what the user asked for (a config value, a path, an input file); entry scripts print it
as one ``error: ...`` line and exit with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's config, paths or input files; the message says what to change."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (a missing ``???``, an unknown key, values that contradict each other)."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user pointed at does not exist or holds nothing usable."""


class InputError(UserError, ValueError):
    """A file the user gave (predictions, a run's JSONL) holds something that cannot be read; the message names the
    file, the line and the field."""

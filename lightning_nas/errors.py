"""User-facing errors.

Anything raised as a :class:`UserError` is a problem with the user's input
(config, path, value). The CLI prints its message on one line and exits with a
non-zero status instead of a traceback. Messages name the problem *and* the fix.
"""

from typing import Optional


class UserError(Exception):
    """Bad input from the user: printed as one line by the CLI, exit code 2."""


class ArchitectureError(UserError, ValueError):
    """An architecture violates the search space (names the field and the allowed range)."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset is missing on disk and downloading was not requested."""


def user_error_in(exc: BaseException) -> Optional[UserError]:
    """The :class:`UserError` that caused ``exc`` (following ``__cause__``/``__context__``), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None

"""Command-line parsers whose errors are one line: a bad option or value becomes a
:class:`~lightning_nas.errors.UserError` (printed as ``error: ...``, exit 2) instead of
jsonargparse's usage dump. Used by every subcommand, LightningCLI's included."""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn, Optional

from jsonargparse import ArgumentParser

from lightning_nas.errors import UserError

PROG = "python -m lightning_nas"


def one_line(message: str, limit: int = 300) -> str:
    """A parser message (jsonargparse nests several lines) as one line; a rejected value reads
    ``invalid value 'abc' for trainer.max_epochs (expected int or None)``."""
    key = re.search(r'Parser key "([^"]+)"', message)
    value = re.search(r"Given value: (.*)", message)
    if key and value:
        expected = re.findall(r"Expected an? <class '([\w.]+)'>", message)
        names = [("None" if e == "NoneType" else e) for e in dict.fromkeys(expected)]
        where, given = key.group(1), value.group(1).strip()
        nested = re.fullmatch(r"NestedArg\(key='([^']+)', val='(.*)'\)", given)
        if nested:  # --model.init_args.lr xyz is reported against "model"
            where, given = f"{where}.init_args.{nested.group(1)}", nested.group(2)
        text = f"invalid value {given!r} for {where}" + (f" (expected {' or '.join(names)})" if names else "")
    else:
        text = re.sub(r"\s+", " ", message).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ParserError(UserError, argparse.ArgumentError):
    """A bad option or value. Also an ``ArgumentError``: jsonargparse catches those while it tries
    the alternatives of a type (a class path, a union), so its own error handling keeps working."""

    def __init__(self, message: str) -> None:
        argparse.ArgumentError.__init__(self, None, message)

    def __str__(self) -> str:
        return self.message


class OneLineErrors:
    """Mixin for a jsonargparse parser: ``error()`` raises one :class:`UserError` line."""

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse tries alternatives internally: keep its behaviour
            super().error(message, ex)  # type: ignore[misc]
        cause = ex
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__ or cause.__context__
        prog = self.prog.replace(" [options]", "")  # type: ignore[attr-defined]
        raise ParserError(str(cause) if cause is not None else f"{one_line(message)} (see {prog} --help)")


class CommandParser(OneLineErrors, ArgumentParser):
    """The parser of a ``python -m lightning_nas`` subcommand (``prog`` names it)."""

    def __init__(self, *args: Any, command: Optional[str] = None, **kwargs: Any) -> None:
        if command is not None:  # jsonargparse makes nested parsers of this class with its own arguments
            kwargs.setdefault("prog", f"{PROG} {command}")
        super().__init__(*args, **kwargs)

"""``python -m lightning_nas SUBCOMMAND --config FILE``.

``fit``/``validate``/``test``/``predict`` go to LightningCLI; the other subcommands
are registered in :data:`SUBCOMMANDS` and take the same ``--config`` style.
User errors (:class:`~lightning_nas.errors.UserError`) print one line and exit 2.
"""

from __future__ import annotations

import errno
import importlib
import os
import select
import signal
import sqlite3
import sys

from lightning_nas.errors import user_error_in

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


# Subcommand -> module with ``main(argv)``; imported only when used (startup stays fast).
SUBCOMMANDS: dict[str, str] = {
    "space": "lightning_nas.commands.space",
    "build-dataset": "lightning_nas.commands.build_dataset",
    "fit-surrogate": "lightning_nas.commands.fit_surrogate",
    "search": "lightning_nas.commands.search",
    "search-loop": "lightning_nas.commands.search_loop",
    "retrain": "lightning_nas.commands.retrain",
    "configs": "lightning_nas.commands.configs",
}

USAGE = (
    "usage: python -m lightning_nas {" + ",".join(LIGHTNING_SUBCOMMANDS + tuple(SUBCOMMANDS)) + "} [--config FILE] ...\n"
    "  fit|validate|test|predict  LightningCLI on the analog module (see --help of each)\n"
    "  space                      print the search space, its exact size and samples\n"
    "  build-dataset              train sampled architectures into a surrogate dataset (resumable)\n"
    "  fit-surrogate              train and evaluate the XGBoost (and MLP) surrogates\n"
    "  search                     evolutionary search with a surrogate under constraints\n"
    "  search-loop                search, train the top candidates, refit the surrogate, again (resumable)\n"
    "  retrain                    train the search winners and a baseline fully, compare them\n"
    "  configs                    where the shipped configs, digits campaign and surrogate are"
)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, batch schedulers): unwinds like Ctrl-C, so workers are stopped and
    finished work is kept."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


_OS_FIXES = {
    errno.EACCES: "check the permissions or choose another path",
    errno.EPERM: "check the permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOSPC: "free disk space and rerun the same command (finished work is kept)",
    errno.EDQUOT: "free disk space (quota) and rerun the same command (finished work is kept)",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a directory",
    errno.ENOTDIR: "a part of the path is not a directory: check the path",
    errno.ENAMETOOLONG: "use a shorter path",
}


def environment_error(exc: BaseException) -> str | None:
    """One line for a failure caused by the environment (files, permissions, disk, the store), or
    ``None`` for anything else (a programming error keeps its traceback)."""
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
        what = exc.strerror or str(exc)
        where = f": {exc.filename}" if exc.filename else ""
        fix = _OS_FIXES.get(exc.errno or -1)
        return f"{what}{where}" + (f"; {fix}" if fix else "")
    if type(exc).__name__ == "MisconfigurationException":  # Lightning's verdict on Trainer arguments
        return f"{str(exc).splitlines()[0]} (see the trainer options in --help)"
    if isinstance(exc, sqlite3.Error):
        fix = ("free disk space and rerun the same command (stored rows are kept)" if "full" in str(exc)
               else "check the store file and its directory (permissions, free space)")
        return f"SQLite store: {exc}; {fix}"
    return None


def _stdout_closed() -> bool:
    """True when standard output is a pipe whose reader went away (``... | head``)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    from_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    previous = signal.signal(signal.SIGTERM, _terminate) if from_process else None
    try:
        if command in LIGHTNING_SUBCOMMANDS:
            from lightning_nas.cli import run_lightning_cli

            run_lightning_cli(None if from_process else [command, *rest])
        elif command in SUBCOMMANDS:
            importlib.import_module(SUBCOMMANDS[command]).main(rest)
        else:
            import difflib

            near = difflib.get_close_matches(command, LIGHTNING_SUBCOMMANDS + tuple(SUBCOMMANDS), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            print(f"error: unknown subcommand {command!r}{hint}\n{USAGE}", file=sys.stderr)
            return 2
    except BrokenPipeError:
        if not _stdout_closed():  # a pipe to a worker, not `python -m lightning_nas space | head`
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - user errors may arrive wrapped by jsonargparse
        err = user_error_in(exc)
        line = str(err) if err is not None else environment_error(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        name = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"{name}: finished work is kept; run the same command again to continue", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())

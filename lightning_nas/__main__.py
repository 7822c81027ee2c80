"""``python -m lightning_nas SUBCOMMAND --config FILE``.

``fit``/``validate``/``test``/``predict`` go to LightningCLI; the other subcommands
are registered in :data:`SUBCOMMANDS` and take the same ``--config`` style.
User errors (:class:`~lightning_nas.errors.UserError`) print one line and exit 2.
"""

from __future__ import annotations

import importlib
import os
import sys

from lightning_nas.errors import UserError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


# Subcommand -> module with ``main(argv)``; imported only when used (startup stays fast).
SUBCOMMANDS: dict[str, str] = {
    "space": "lightning_nas.commands.space",
    "build-dataset": "lightning_nas.commands.build_dataset",
    "fit-surrogate": "lightning_nas.commands.fit_surrogate",
    "search": "lightning_nas.commands.search",
    "retrain": "lightning_nas.commands.retrain",
}

USAGE = (
    "usage: python -m lightning_nas {" + ",".join(LIGHTNING_SUBCOMMANDS + tuple(SUBCOMMANDS)) + "} [--config FILE] ...\n"
    "  fit|validate|test|predict  LightningCLI on the analog module (see --help of each)\n"
    "  space                      print the search space, its exact size and samples\n"
    "  build-dataset              train sampled architectures into a surrogate dataset (resumable)\n"
    "  fit-surrogate              train and evaluate the XGBoost (and MLP) surrogates\n"
    "  search                     evolutionary search with a surrogate under constraints\n"
    "  retrain                    train the search winners and a baseline fully, compare them"
)


def user_error_in(exc: BaseException) -> UserError | None:
    """The :class:`UserError` that caused ``exc`` (following ``__cause__``/``__context__``), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    from_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command in LIGHTNING_SUBCOMMANDS:
            from lightning_nas.cli import run_lightning_cli

            run_lightning_cli(None if from_process else [command, *rest])
        elif command in SUBCOMMANDS:
            importlib.import_module(SUBCOMMANDS[command]).main(rest)
        else:
            print(f"error: unknown subcommand {command!r}\n{USAGE}", file=sys.stderr)
            return 2
    except BrokenPipeError:  # e.g. `python -m lightning_nas space | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - user errors may arrive wrapped by jsonargparse
        err = user_error_in(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

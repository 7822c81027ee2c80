"""MkDocs hook: ``<!-- cli-help: NAME -->`` on a page becomes subcommand NAME's ``--help``, as the
parser prints it, so the reference of every option and config field is the text the command shows;
``<!-- cli-help: fit --model.help AnalogNASModule -->`` prints the help that command line asks for
(a LightningCLI class's own arguments)."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re

PLACEHOLDER = re.compile(r"<!-- cli-help: ([\w-]+)((?: [^ >]+)*) -->")


def help_text(name: str, asks: tuple[str, ...] = ()) -> str:
    """``python -m lightning_nas NAME --help`` (or ``NAME *asks``), in-process, 100 columns wide."""
    from lightning_nas.__main__ import LIGHTNING_SUBCOMMANDS, SUBCOMMANDS

    os.environ["COLUMNS"] = "100"
    if name in SUBCOMMANDS:
        return importlib.import_module(SUBCOMMANDS[name]).build_parser().format_help()
    if name not in LIGHTNING_SUBCOMMANDS:
        raise ValueError(f"cli-help: unknown subcommand {name!r}")
    from lightning_nas.cli import run_lightning_cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        run_lightning_cli([name, *(asks or ("--help",))])
    return out.getvalue()


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook signature
    return PLACEHOLDER.sub(lambda m: f"```text\n{help_text(m.group(1), tuple(m.group(2).split())).rstrip()}\n```",
                           markdown)

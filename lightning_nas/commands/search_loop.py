"""``python -m lightning_nas search-loop --config configs/digits/loop.yaml``.

Search in the loop (:mod:`lightning_nas.search.loop`): for ``rounds`` rounds, search with the
current surrogate, train the best ``candidates`` feasible architectures not measured yet with the
campaign's recipe into its store, report predicted against measured (bias and tau on the new rows),
refit the surrogate; then train the best measured candidate again with ``confirm_seeds``. Writes
``out_dir/loop.json`` and ``loop.md``, and per round its search outputs and refitted surrogate.
Resumable: run the same command again after a stop.
"""

from __future__ import annotations

from jsonargparse import ActionConfigFile

from lightning_nas.checkout import refuse_installed_copy
from lightning_nas.parsing import CommandParser
from lightning_nas.search.loop import LoopConfig, run_loop


def build_parser() -> CommandParser:
    parser = CommandParser(command="search-loop", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(LoopConfig, None)
    return parser


def main(argv: list[str]) -> None:
    cfg = build_parser().parse_args(argv)
    refuse_installed_copy(cfg.out_dir, "search-loop out_dir", "--out_dir")  # the store: run_loop checks it
    run_loop(LoopConfig(**{k: v for k, v in cfg.as_dict().items() if k != "config"}))

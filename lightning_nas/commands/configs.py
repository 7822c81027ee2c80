"""``python -m lightning_nas configs``: where the shipped configs, the digits campaign and its
surrogate are (the checkout, or the copy a non-editable install carries), one config per line.

Run a shipped config from any directory with ``--config`` and the path printed here; its relative
paths are relative to its own folder, and its outputs go where ``--out_dir`` / ``--store`` point.
"""

from __future__ import annotations

from lightning_nas.checkout import INSTALLED, shipped_configs, shipped_root
from lightning_nas.parsing import CommandParser


def build_parser() -> CommandParser:
    parser = CommandParser(command="configs", description=__doc__)
    parser.add_argument("--root", action="store_true", help="Print only the folder holding configs/, datasets/ "
                                                                 "and surrogates/.")
    return parser


def main(argv: list[str]) -> None:
    cfg = build_parser().parse_args(argv)
    root = shipped_root()
    if cfg.root:
        print(root)
        return
    where = "installed with the package: read them, don't write into them" if root == INSTALLED else "the checkout"
    print(f"# shipped files in {root} ({where}); the digits campaign {root / 'datasets'}, its surrogate "
          f"{root / 'surrogates' / 'digits'}")
    for path in shipped_configs():
        print(path)

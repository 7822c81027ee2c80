"""``python -m lightning_nas space``: describe the search space, count it, draw samples."""

from __future__ import annotations

from typing import Optional

from jsonargparse import ActionConfigFile

from lightning_nas.parsing import CommandParser
from lightning_nas.space import check_task_shape, iter_sample, n_params, space_summary


def build_parser() -> CommandParser:
    parser = CommandParser(command="space", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--sample", type=int, default=0, help="Draw this many architectures and print them.")
    parser.add_argument("--method", type=str, default="uniform", help="Sampling method: uniform or lhs.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_params", type=Optional[int], default=None, help="Parameter budget for samples.")
    parser.add_argument("--input_shape", type=tuple[int, int, int], default=(3, 32, 32))
    parser.add_argument("--num_classes", type=int, default=10)
    return parser


def main(argv: list[str]) -> None:
    cfg = build_parser().parse_args(argv)
    check_task_shape(cfg.input_shape, cfg.num_classes)
    print(space_summary())
    if cfg.sample:
        print(f"\n{cfg.sample} {cfg.method} samples (seed {cfg.seed}, input {tuple(cfg.input_shape)}):", flush=True)
        for arch in iter_sample(cfg.sample, seed=cfg.seed, method=cfg.method, max_params=cfg.max_params,
                                in_shape=cfg.input_shape, n_classes=cfg.num_classes):  # streamed
            print(f"  {arch.id}  {n_params(arch, cfg.input_shape, cfg.num_classes):>10,}  {arch.describe()}")

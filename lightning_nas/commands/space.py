"""``python -m lightning_nas space``: describe the search space, count it, draw samples."""

from __future__ import annotations

from typing import Optional

from jsonargparse import ActionConfigFile

from lightning_nas.analog import AnalogConfig
from lightning_nas.hardware_cost import ChipConfig, chip_from, hardware_cost
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
    parser.add_argument("--analog_preset", type=str, default="pcm_hwa",
                        help="The analog preset whose tile size maps the samples (for their hardware cost).")
    parser.add_class_arguments(ChipConfig, "chip", help="The chip the hardware cost is estimated for.")
    return parser


def main(argv: list[str]) -> None:
    cfg = build_parser().parse_args(argv)
    check_task_shape(cfg.input_shape, cfg.num_classes)
    tile_size = AnalogConfig(preset=cfg.analog_preset).resolved().tile_size
    chip = chip_from(cfg.chip.as_dict() if hasattr(cfg.chip, "as_dict") else cfg.chip)
    print(space_summary())
    if cfg.sample:
        print(f"\n{cfg.sample} {cfg.method} samples (seed {cfg.seed}, input {tuple(cfg.input_shape)}); analog cost "
              f"per inference with preset {cfg.analog_preset}'s tiles on a {chip.n_tiles}-tile chip:", flush=True)
        print(f"  {'arch_id':<12}  {'params':>10}  {'tiles':>6}  {'util':>6}  {'latency_us':>10}  {'energy_uj':>9}  "
              "fits  architecture")
        for arch in iter_sample(cfg.sample, seed=cfg.seed, method=cfg.method, max_params=cfg.max_params,
                                in_shape=cfg.input_shape, n_classes=cfg.num_classes):  # streamed
            cost = hardware_cost(arch, cfg.input_shape, cfg.num_classes, tile_size, chip)
            print(f"  {arch.id}  {n_params(arch, cfg.input_shape, cfg.num_classes):>10,}  {cost.tiles:>6,}  "
                  f"{cost.utilisation:>6.2%}  {cost.latency_us:>10,.1f}  {cost.energy_uj:>9,.2f}  "
                  f"{'yes' if cost.fits_chip else 'no ':<4}  {arch.describe()}")

"""LightningCLI for ``fit``/``validate``/``test``/``predict`` with the forced drift callback."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_nas.callbacks import DriftEvaluation
from lightning_nas.conversion import allow_analog_checkpoints
from lightning_nas.data import TaskDataModule
from lightning_nas.module import AnalogNASModule

DEFAULT_MODEL = "lightning_nas.module.AnalogNASModule"
DEFAULT_DATA = "lightning_nas.data.DigitsDataModule"


class AnalogNASCLI(LightningCLI):
    """``python -m lightning_nas fit --config configs/digits.yaml``.

    * ``model`` and ``data`` are selectable by ``class_path`` (defaults: the analog
      module and the offline digits task); the model's ``input_shape`` and
      ``num_classes`` are linked from the datamodule.
    * ``drift``: the :class:`~lightning_nas.callbacks.DriftEvaluation` callback, always on.
    * ``test_after_fit`` (default true): ``fit`` ends with a test run, so the drift
      table and ``drift_metrics.json`` come with every trained model.
    * TensorBoard under ``runs/<name>/version_N`` holds config, checkpoints, events
      and ``drift_metrics.json``.
    """

    def __init__(self, args: Any = None, run: bool = True) -> None:
        super().__init__(
            AnalogNASModule,
            TaskDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                           "init_args": {"save_dir": "runs", "name": "default"}},
            },
            auto_configure_optimizers=False,
            seed_everything_default=0,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(DriftEvaluation, "drift")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="After fit, run test (drift evaluation) on the trained model.")
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}, "data": {"class_path": DEFAULT_DATA}})
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit", True) and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule)


def run_lightning_cli(argv: list[str] | None) -> None:
    """Run the CLI on ``argv`` (``None``: the process's own command line)."""
    allow_analog_checkpoints()  # LightningCLI reads a --ckpt_path's hyper-parameters while parsing
    AnalogNASCLI(args=argv)

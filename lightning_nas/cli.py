"""LightningCLI for ``fit``/``validate``/``test``/``predict`` with the forced drift callback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from lightning_nas.callbacks import DriftEvaluation, LearningCurve
from lightning_nas.conversion import allow_analog_checkpoints
from lightning_nas.data import TaskDataModule
from lightning_nas.errors import UserError
from lightning_nas.module import AnalogNASModule
from lightning_nas.parsing import PROG, OneLineErrors

DEFAULT_MODEL = "lightning_nas.module.AnalogNASModule"
DEFAULT_DATA = "lightning_nas.data.DigitsDataModule"


class OneLineErrorParser(OneLineErrors, LightningArgumentParser):
    """LightningCLI's parser with one-line errors (:mod:`lightning_nas.parsing`)."""


def check_checkpoint(path: str) -> dict[str, Any]:
    """Load ``--ckpt_path`` (weights only) or raise a :class:`UserError` saying what is wrong with it."""
    import torch

    file = Path(path)
    if not file.exists():
        raise UserError(f"--ckpt_path {path}: no such file; give the path of a .ckpt file (e.g. under "
                        "runs/<name>/version_N/checkpoints/)")
    if not file.is_file():
        raise UserError(f"--ckpt_path {path} is not a file; give the path of a .ckpt file inside it")
    allow_analog_checkpoints()
    try:
        ckpt = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - truncated, empty, not a checkpoint at all
        raise UserError(f"--ckpt_path {path} is not a readable checkpoint ({type(exc).__name__}); "
                        "give a .ckpt file written by fit") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"--ckpt_path {path} is not a Lightning checkpoint (no state_dict); give a .ckpt file "
                        "written by fit")
    return ckpt


class AnalogNASCLI(LightningCLI):
    """``python -m lightning_nas fit --config configs/digits/fit.yaml``.

    * ``model`` and ``data`` are selectable by ``class_path`` (defaults: the analog
      module and the offline digits task); the model's ``input_shape`` and
      ``num_classes`` are linked from the datamodule.
    * ``drift``: the :class:`~lightning_nas.callbacks.DriftEvaluation` callback, always on; and the
      :class:`~lightning_nas.callbacks.LearningCurve` (per-epoch loss, validation accuracy and
      ``train/hardware_aware``).
    * ``test_after_fit`` (default true): ``fit`` ends with a test run, so the drift
      table and ``drift_metrics.json`` come with every trained model.
    * TensorBoard under ``runs/<name>/version_N`` holds config, checkpoints, events
      and ``drift_metrics.json``; ``save_config=False`` writes no ``config.yaml`` (a run without a
      logger would write it into the working directory).
    """

    def __init__(self, args: Any = None, run: bool = True, save_config: bool = True) -> None:
        super().__init__(
            AnalogNASModule,
            TaskDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            save_config_callback=SaveConfigCallback if save_config else None,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                           "init_args": {"save_dir": "runs", "name": "default"}},
            },
            auto_configure_optimizers=False,
            seed_everything_default=0,
            parser_class=OneLineErrorParser,
        )

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("prog", PROG)
        return super().init_parser(**kwargs)

    def before_instantiate_classes(self) -> None:
        """A run's saved ``config.yaml`` records the architecture itself, not the path of a winner file
        (which may change or vanish)."""
        from lightning_nas.space import load_architecture

        subcommand = self.config.get("subcommand")
        section = self.config[subcommand] if subcommand else self.config
        init = section.get("model", {}).get("init_args", {})
        spec = init.get("architecture") if init else None
        if isinstance(spec, str) and (spec.endswith((".yaml", ".yml")) or Path(spec).is_file()):
            init["architecture"] = load_architecture(spec).to_dict()
        if subcommand == "fit" and init:  # a run length the recipe can't train: before any model is built
            from lightning_nas.module import AnalogNASModule

            AnalogNASModule.check_epochs(init.get("digital_warmup_epochs", 0) or 0,
                                         init.get("digital_warmup_fraction", 0.0) or 0.0,
                                         section.get("trainer", {}).get("max_epochs"))

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` first (one error line for a missing or damaged file), and say when the
        checkpoint's architecture replaces a different one from the config."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path:
            return
        stored = check_checkpoint(path).get("hyper_parameters", {}).get("architecture")
        asked = self.config[subcommand].get("model", {}).get("init_args", {}).get("architecture")
        super()._parse_ckpt_path()
        if stored is not None and asked is not None:
            from lightning_nas.space import load_architecture

            try:
                same = load_architecture(asked) == load_architecture(stored)
            except UserError:
                same = False
            if not same:
                print(f"note: {path} holds architecture {load_architecture(stored).describe()}; it replaces "
                      f"the config's {asked!r}", file=sys.stderr)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(DriftEvaluation, "drift")
        parser.add_lightning_class_args(LearningCurve, "learning_curve")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="After fit, run test (drift evaluation) on the trained model.")
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}, "data": {"class_path": DEFAULT_DATA}})
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit", True) and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule)
        print_written(self.trainer)

    def after_test(self) -> None:
        print_written(self.trainer)

    def after_validate(self) -> None:
        print_written(self.trainer)


def written_paths(trainer: Any) -> list[tuple[str, str]]:
    """(what, path) of the files a run wrote: its run folder (config.yaml, TensorBoard events), the
    checkpoint and the drift evaluation's ``drift_metrics.json``."""
    out = []
    if trainer.logger is not None and trainer.log_dir:
        out.append(("run folder (config.yaml, TensorBoard events)", trainer.log_dir))
    checkpoint = trainer.checkpoint_callback
    path = (checkpoint.best_model_path or checkpoint.last_model_path) if checkpoint is not None else ""
    if path:
        out.append(("checkpoint", path))
    drift = next((cb for cb in trainer.callbacks if isinstance(cb, DriftEvaluation)), None)
    if drift is not None and drift.written is not None:
        out.append(("drift metrics", str(drift.written)))
    return out


def print_written(trainer: Any) -> None:
    """``wrote: ...`` lines on stderr, one a path, so a run's outputs are found without searching."""
    for what, path in written_paths(trainer):
        print(f"wrote: {what}: {path}", file=sys.stderr)


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def quiet_lightning_tips() -> None:
    """Drop Lightning's advertising tips (litlogger, litmodels) and a deprecation warning Lightning raises
    about its own use of torch's pytree from every run's output (``python -W default`` shows warnings)."""
    import warnings

    if not sys.warnoptions:
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())


def run_lightning_cli(argv: list[str] | None) -> None:
    """Run the CLI on ``argv`` (``None``: the process's own command line)."""
    # The seed is in the run's config.yaml; its log line would come before any error line.
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    quiet_lightning_tips()
    allow_analog_checkpoints()  # LightningCLI reads a --ckpt_path's hyper-parameters while parsing
    AnalogNASCLI(args=argv)

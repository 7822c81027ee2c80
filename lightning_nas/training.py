"""Train one architecture and evaluate its drift: the one way campaigns, ``retrain`` and tests do it.

:func:`fit_and_evaluate` runs ``fit`` then ``test`` (where the :class:`DriftEvaluation` callback
programs and drifts the analog weights) on objects built by the caller: a campaign builds them from
its :class:`~lightning_nas.campaign.train.Budget`, ``retrain`` from the task's fit config
(:func:`from_fit_config`, the same config ``python -m lightning_nas fit`` takes).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L

from lightning_nas.callbacks import DriftEvaluation
from lightning_nas.errors import UserError
from lightning_nas.module import AnalogNASModule


@dataclass
class Evaluation:
    """What training and drift evaluation measured for one architecture (accuracies in %)."""

    arch_id: str
    n_params: int
    val_acc: float
    """Digital-path validation accuracy at the end of training (NaN without validation)."""
    test_acc: float
    """Test accuracy of the trained model as it is (before programming and drift)."""
    drift: dict[str, float]
    """``acc_1s``, ``acc_1h``, ``acc_1d``, ``acc_30d``, ``acc_1d_std``, ``avm`` (names of
    :mod:`lightning_nas.metrics` without the logging prefix)."""
    hardware: Optional[dict[str, Any]] = None
    """The analog hardware cost of one inference (:meth:`lightning_nas.hardware_cost.HardwareCost.summary`)."""


def drift_callback(trainer: L.Trainer) -> DriftEvaluation:
    found = [cb for cb in trainer.callbacks if isinstance(cb, DriftEvaluation)]
    if not found:
        raise UserError("the trainer has no DriftEvaluation callback; add one to its callbacks")
    return found[0]


def fit_and_evaluate(model: AnalogNASModule, datamodule: L.LightningDataModule, trainer: L.Trainer,
                     verbose: bool = False) -> Evaluation:
    """``trainer.fit`` then ``trainer.test`` (drift evaluation) of ``model`` on ``datamodule``."""
    drift = drift_callback(trainer)
    trainer.fit(model, datamodule=datamodule)
    val = trainer.callback_metrics.get("val/acc")
    result = trainer.test(model, datamodule=datamodule, verbose=verbose)[0]
    return Evaluation(arch_id=model.arch.id, n_params=model.n_params,
                      val_acc=100.0 * float(val) if val is not None else math.nan,
                      test_acc=100.0 * float(result["test/acc"]), drift=drift.results,
                      hardware=model.hardware_cost().summary())


def from_fit_config(fit_config: str | Path, architecture: str, log_dir: str | Path, name: str,
                    extra_args: Sequence[str] = (), threads: Optional[int] = None) -> Evaluation:
    """Train ``architecture`` (a preset name or an architecture file) with a task's fit config, as
    ``fit --config FIT_CONFIG --model.init_args.architecture ARCHITECTURE`` would, logging to
    ``log_dir/name``; ``extra_args`` are more ``fit`` options. ``threads`` sets torch's CPU threads
    (a Ray task uses the CPUs it declared)."""
    from lightning_nas.cli import AnalogNASCLI, quiet_lightning_tips

    quiet_lightning_tips()

    if threads:
        import torch

        torch.set_num_threads(threads)
    args = ["--config", str(fit_config), "--model.init_args.architecture", str(architecture),
            "--trainer.logger.init_args.save_dir", str(log_dir), "--trainer.logger.init_args.name", name,
            *extra_args]
    with warnings.catch_warnings():  # LightningCLI warns that this process has its own command line
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli: Any = AnalogNASCLI(args=args, run=False)
    return fit_and_evaluate(cli.model, cli.datamodule, cli.trainer, verbose=True)

"""Train one architecture and evaluate its drift: the one way campaigns, ``retrain`` and tests do it.

:func:`fit_and_evaluate` runs ``fit`` then ``test`` (where the :class:`DriftEvaluation` callback
programs and drifts the analog weights) on given objects; :func:`train_config` builds them from a
resolved fit config (:mod:`lightning_nas.fit_config`), as ``python -m lightning_nas fit`` does:
campaign rows and ``retrain`` runs train that way.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import lightning as L

from lightning_nas.callbacks import DriftEvaluation, LearningCurve
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
    drift_samples: int = 0
    """Test samples the drift evaluation measured on."""
    curves: Optional[dict[str, list[Any]]] = None
    """The learning curve (:class:`~lightning_nas.callbacks.LearningCurve`), when the trainer records one."""
    steps: Optional[int] = None
    """Optimizer steps the training took (digital warm-up and hardware-aware epochs)."""


MIN_OPTIMIZER_STEPS = 1000
"""Optimizer steps below which the recipe is known to leave networks underfitted
(docs/findings/trainability.md, recipe item 3): on digits 15 epochs of 20 batches (300 steps) left deep
networks at 30 % training accuracy after the warm-up and still climbing when the schedule ended;
79 batches an epoch (1,185 steps) trained 35 of 40 random architectures."""


def few_steps(steps: Optional[int], epochs: Optional[int]) -> Optional[str]:
    """A warning when a training of ``steps`` optimizer steps is below :data:`MIN_OPTIMIZER_STEPS`
    (None when it is not, or the steps are unknown)."""
    if steps is None or steps >= MIN_OPTIMIZER_STEPS:
        return None
    per_epoch = f" ({epochs} epochs of {steps // epochs} batches)" if epochs else ""
    return (f"this budget trains each architecture for {steps} optimizer steps{per_epoch}, fewer than the "
            f"{MIN_OPTIMIZER_STEPS} the recipe needs to learn (docs/findings/trainability.md, recipe item 3: 300 steps "
            "left deep networks underfitted on digits): rows will measure the budget, not the architectures. Give "
            "more steps: more epochs, a smaller data.init_args.batch_size, a larger train_fraction or "
            "limit_train_batches")


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
                      val_acc=float(val) if val is not None else math.nan,
                      test_acc=float(result["test/acc"]), drift=drift.results,
                      hardware=model.hardware_cost().summary(), drift_samples=drift.samples,
                      curves=next((dict(cb.curve) for cb in trainer.callbacks if isinstance(cb, LearningCurve)), None),
                      steps=int(trainer.global_step))


def build(config: Mapping[str, Any]) -> tuple[AnalogNASModule, L.LightningDataModule, L.Trainer]:
    """The model, datamodule and trainer (with its drift callback) of a resolved fit config, as
    ``fit`` builds them (``seed_everything`` is applied first, as in ``fit``). With a logger the
    config is saved in its run folder as ``config.yaml`` (``fit --config`` of it trains the same run)."""
    from lightning_nas.cli import AnalogNASCLI, quiet_lightning_tips

    quiet_lightning_tips()
    with warnings.catch_warnings():  # LightningCLI warns that this process has its own command line
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli: Any = AnalogNASCLI(args=dict(config), run=False, save_config=bool(config["trainer"].get("logger")))
    return cli.model, cli.datamodule, cli.trainer


def train_config(config: Mapping[str, Any], verbose: bool = False) -> Evaluation:
    """Train and drift-evaluate what a resolved fit config describes (``fit --config`` of it)."""
    return fit_and_evaluate(*build(config), verbose=verbose)

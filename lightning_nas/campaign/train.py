"""A campaign's training budget, and one campaign job: train one architecture into a row."""

from __future__ import annotations

import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Optional

from lightning_nas.classpath import instantiate
from lightning_nas.errors import UserError
from lightning_nas.metrics import DEFAULT_TIMES


@dataclass
class Budget:
    """What each architecture of a campaign gets."""

    epochs: int = 3
    digital_warmup_epochs: int = 0
    train_fraction: float = 1.0
    """Train on a seeded subset of the training split (proxy data)."""
    n_reps: int = 3
    t_inference: list[float] = field(default_factory=lambda: list(DEFAULT_TIMES))
    lr: float = 0.05
    seed: int = 0
    limit_train_batches: Optional[int] = None
    """Cap the batches per epoch (partial training; mostly for tests)."""
    drift_samples: Optional[int] = None
    """Evaluate drift on a seeded fixed subset of this many test samples (null: the whole test split);
    recorded in each row as ``drift_samples``."""
    threads: Optional[int] = None
    """torch CPU threads of every job (null: the machine's cores shared out among the workers). CPU
    rows are bit-reproducible for a given seed and thread count, not across thread counts (torch's
    parallel reductions sum in another order), so a campaign that must give the same rows on any
    machine of the same CPU model fixes it (other CPU models differ a little even then); recorded in each row as ``threads``."""

    def check(self) -> None:
        """Catch a bad budget before a campaign (and its store) is bound to it."""
        from lightning_nas.callbacks import DriftEvaluation

        if self.epochs < 1 or not 0 <= self.digital_warmup_epochs < self.epochs:
            raise UserError(f"budget.epochs must be >= 1 and budget.digital_warmup_epochs in 0..epochs-1 (the last "
                            f"epochs train hardware-aware), got "
                            f"{self.epochs} and {self.digital_warmup_epochs}")
        if not 0 < self.train_fraction <= 1:
            raise UserError(f"budget.train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.lr <= 0:
            raise UserError(f"budget.lr must be > 0, got {self.lr}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise UserError(f"budget.threads must be an integer >= 1 or null, got {self.threads!r}")
        DriftEvaluation(t_inference=self.t_inference, n_reps=self.n_reps,  # raises on bad drift settings
                        max_samples=self.drift_samples)


def base_row(job: dict[str, Any], status: str = "ok", message: str = "") -> dict[str, Any]:
    """The fields every row has, whatever happened to the training."""
    from lightning_nas.analog import AnalogConfig
    from lightning_nas.space import Architecture

    arch = Architecture.from_dict(job["arch"])
    budget = Budget(**job["budget"])
    return {"arch_id": arch.id, "arch": arch.to_dict(), "describe": arch.describe(),
            "features": arch.feature_vector(), "analog": AnalogConfig(**job["analog"]).hardware_features(),
            "task": job["task"], "epochs": budget.epochs, "seed": budget.seed, "status": status,
            "message": message, "wall_s": 0.0}


def failed_row(job: dict[str, Any], message: str) -> dict[str, Any]:
    """The row of a job whose training could not run to an end (its worker died, ...)."""
    return base_row(job, "failed", message)


def train_architecture(job: dict[str, Any]) -> dict[str, Any]:
    """Train and drift-evaluate ``job["arch"]``; returns the row (never raises for the
    architecture's own failures: divergence and errors become a status)."""
    import lightning as L
    import torch

    from lightning_nas.analog import AnalogConfig
    from lightning_nas.callbacks import DriftEvaluation
    from lightning_nas.cli import quiet_lightning_tips
    from lightning_nas.module import AnalogNASModule
    from lightning_nas.space import Architecture, n_params
    from lightning_nas.training import fit_and_evaluate

    quiet_lightning_tips()
    arch = Architecture.from_dict(job["arch"])
    budget = Budget(**job["budget"])
    analog = AnalogConfig(**job["analog"]).resolved()
    row = base_row(job)
    start = time.perf_counter()
    for name in ("lightning.pytorch", "lightning.fabric"):  # one line per architecture is the progress bar
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if budget.threads or job.get("threads"):
            torch.set_num_threads(budget.threads or job["threads"])
        row["threads"] = torch.get_num_threads()
        L.seed_everything(budget.seed, verbose=False)
        data_spec = {**job["data"], "init_args": {**job["data"].get("init_args", {}),
                                                   "train_fraction": budget.train_fraction,
                                                   "seed": job.get("data_seed", budget.seed)}}
        dm = instantiate(data_spec)
        row["n_params"] = n_params(arch, dm.input_shape, dm.num_classes)
        model = AnalogNASModule(arch.to_dict(), analog=analog, input_shape=dm.input_shape,
                                num_classes=dm.num_classes, lr=budget.lr,
                                digital_warmup_epochs=budget.digital_warmup_epochs)
        # The row keeps the metrics; without a log dir there is nowhere to put drift_metrics.json
        # (the trainer would fall back to the working directory).
        drift = DriftEvaluation(t_inference=budget.t_inference, n_reps=budget.n_reps, seed=budget.seed,
                                verbose=False, save_json=bool(job.get("log_dir")), max_samples=budget.drift_samples)
        logger: Any = False
        if job.get("log_dir"):
            from lightning.pytorch.loggers import TensorBoardLogger

            logger = TensorBoardLogger(job["log_dir"], name=arch.id, version="")
        trainer = L.Trainer(max_epochs=budget.epochs, callbacks=[drift], logger=logger,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_train_batches=budget.limit_train_batches, num_sanity_val_steps=0,
                            accelerator=job.get("accelerator", "auto"), devices=job.get("devices", "auto"))
        result = fit_and_evaluate(model, dm, trainer)
        row["val_acc"], row["acc_eval"], row["metrics"] = result.val_acc, result.test_acc, result.drift
        row["drift_samples"] = drift.samples
        if not all(math.isfinite(v) for v in row["metrics"].values()):
            row["status"], row["message"] = "diverged", "non-finite drift metrics"
    except FloatingPointError as err:
        # The module names fit's setting (model.lr); a campaign sets it as budget.lr.
        row["status"], row["message"] = "diverged", str(err).replace("lower model.lr", "lower budget.lr")
    except Exception as err:  # noqa: BLE001 - recorded in the row, the campaign goes on
        row["status"] = "failed"
        row["message"] = f"{type(err).__name__}: {err}"
        row["traceback"] = traceback.format_exc(limit=5)
        if "out of memory" in str(err).lower():
            row["message"] = "out of memory: " + row["message"]
    row["wall_s"] = time.perf_counter() - start
    return row

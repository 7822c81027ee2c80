"""Program and drift the analog weights, then log accuracy over time, its std and AVM."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from lightning_nas.drift import evaluate_drift
from lightning_nas.errors import UserError
from lightning_nas.metrics import DAY, DEFAULT_TIMES, PREFIX, drift_summary, format_table

METRICS_FILE = "drift_metrics.json"


class DriftEvaluation(L.Callback):
    r"""Evaluate the analog model after programming and drift.

    On test end (and, if ``every_n_val_epochs`` is set, after every k-th validation
    epoch) the analog weights are programmed ``n_reps`` times with fresh programming
    noise and drifted to each time in ``t_inference`` (seconds). Logged names are
    documented in :mod:`lightning_nas.metrics`: ``analog/acc_1s``, ``analog/acc_1h``,
    ``analog/acc_1d``, ``analog/acc_30d``, ``analog/acc_1d_std``, ``analog/avm``
    for the test set and ``analog_val/...`` for mid-training evaluations.

    ``bn_recalibration`` (training batches, 0 = off) re-estimates the BatchNorm statistics on the
    programmed chip at every drift time before measuring it (AdaBS, Joshi et al., Nature
    Communications 2020): a digital calibration step of the deployed chip, on a seeded fixed sample
    of training data; the analog weights, noise and drift are unchanged.

    The test results are also written to ``drift_metrics.json`` in the trainer's log
    dir (unless ``save_json`` is false), kept in :attr:`metrics` and, with ``verbose``,
    printed as a table. The model's own weights are never changed, so
    training can go on after a mid-training evaluation.

    Example::

        trainer = Trainer(callbacks=[DriftEvaluation(n_reps=5)])
        trainer.test(model, datamodule=dm)   # logs analog/acc_1d, analog/avm, ...
    """

    def __init__(self, t_inference: Sequence[float] = DEFAULT_TIMES, n_reps: int = 5, std_time: float = DAY,
                 every_n_val_epochs: Optional[int] = None, seed: int = 0, verbose: bool = True,
                 save_json: bool = True, max_samples: Optional[int] = None, bn_recalibration: int = 0) -> None:
        times = sorted(float(t) for t in t_inference)
        if not times or times[0] < 0:
            raise UserError(f"t_inference must be a non-empty list of times >= 0 s, got {list(t_inference)}")
        if float(std_time) not in times:
            raise UserError(f"std_time={std_time} s must be one of t_inference={times}")
        if n_reps < 1:
            raise UserError(f"n_reps must be >= 1, got {n_reps}")
        if every_n_val_epochs is not None and every_n_val_epochs < 1:
            raise UserError(f"every_n_val_epochs must be >= 1 or null, got {every_n_val_epochs}")
        if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                        or max_samples < 1):
            raise UserError(f"max_samples must be an integer >= 1 or null (the whole test set), got {max_samples!r}")
        if isinstance(bn_recalibration, bool) or not isinstance(bn_recalibration, int) or bn_recalibration < 0:
            raise UserError(f"bn_recalibration must be an integer >= 0 (training batches; 0 = off), "
                            f"got {bn_recalibration!r}")
        self.bn_recalibration = bn_recalibration
        self.max_samples = max_samples
        self.samples = 0
        self.t_inference = times
        self.n_reps = n_reps
        self.std_time = float(std_time)
        self.every_n_val_epochs = every_n_val_epochs
        self.seed = seed
        self.verbose = verbose
        self.save_json = save_json
        self.metrics: dict[str, float] = {}
        self.written: Optional[Path] = None
        """Where the last test run's ``drift_metrics.json`` went (None: not written)."""
        self.raw: dict[float, list[float]] = {}

    @property
    def results(self) -> dict[str, float]:
        """The last test results without the logging prefix (``acc_1d``, ``avm``, ...)."""
        return {name.split("/", 1)[-1]: value for name, value in self.metrics.items()}

    def calibration_batches(self, trainer: Optional[L.Trainer], loader: Any = None) -> Optional[EvaluationBatches]:
        """The seeded training batches of ``bn_recalibration`` (None when off), drawn from ``loader``, else
        from the trainer's datamodule: its ``calibration_dataloader()`` (the training split without
        augmentation, lightning_nas datamodules) or, for another datamodule, its ``train_dataloader()``."""
        if not self.bn_recalibration:
            return None
        if loader is None:
            datamodule = getattr(trainer, "datamodule", None)
            if datamodule is not None:
                loader = getattr(datamodule, "calibration_dataloader", datamodule.train_dataloader)()
            else:
                loader = getattr(trainer, "train_dataloader", None)
        if loader is None:
            raise UserError("drift.bn_recalibration needs the training data: run with a datamodule, pass "
                            "calibration= to evaluate(), or set drift.bn_recalibration 0")
        # Shuffled, not in dataset order: a dataset stored class by class would give one-class batches.
        return evaluation_batches(loader, self.bn_recalibration * (loader.batch_size or 1), None, self.seed,
                                  keep_order=False)

    def evaluate(self, pl_module: L.LightningModule, dataloader: Any, prefix: str = PREFIX,
                 limit_batches: Optional[int] = None, calibration: Any = None) -> dict[str, float]:
        """Run the drift evaluation on ``dataloader`` (its first ``limit_batches`` batches, or a seeded
        subset of ``max_samples`` samples) and return the summary dict. ``calibration``: a dataloader of
        training data for ``bn_recalibration`` (default: the module's trainer's datamodule, see
        :meth:`calibration_batches`)."""
        net = getattr(pl_module, "net", pl_module)
        if isinstance(dataloader, (list, tuple)):  # several dataloaders: evaluate the first
            dataloader = dataloader[0]
        batches = evaluation_batches(dataloader, self.max_samples, limit_batches, self.seed)
        self.samples = batches.samples
        recalibration = self.calibration_batches(getattr(pl_module, "_trainer", None), calibration)
        self.raw = evaluate_drift(net, batches, self.t_inference, self.n_reps, self.seed, pl_module.device,
                                  calibration=recalibration)
        return drift_summary(self.raw, self.std_time, prefix=prefix)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        k = self.every_n_val_epochs
        if k is None or trainer.sanity_checking or (trainer.current_epoch + 1) % k:
            return
        if not getattr(pl_module, "is_analog", True):
            return  # still in the digital warm-up
        loader = trainer.val_dataloaders
        metrics = self.evaluate(pl_module, loader, prefix="analog_val/")
        pl_module.log_dict(metrics)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        limit = trainer.num_test_batches[0] if trainer.num_test_batches else None
        self.metrics = self.evaluate(pl_module, trainer.test_dataloaders,
                                     limit_batches=None if limit in (None, float("inf")) else int(limit))
        pl_module.log_dict(self.metrics)
        if self.save_json and trainer.is_global_zero:
            self.written = self._write_json(trainer)
        if self.verbose:
            rank_zero_info(f"Drift evaluation ({self.n_reps} programmings, {self.samples} test samples, "
                           "accuracy in %):\n"
                           f"{format_table(self.metrics)}")

    def _write_json(self, trainer: L.Trainer) -> Path:
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / METRICS_FILE
        payload = {"metrics": self.metrics, "samples": self.samples, "t_inference": self.t_inference,
                   "n_reps": self.n_reps, "bn_recalibration": self.bn_recalibration,
                   "std_time": self.std_time, "seed": self.seed,
                   "accuracies": {str(t): accs for t, accs in self.raw.items()}}
        path.write_text(json.dumps(payload, indent=2))
        return path


class EvaluationBatches:
    """Re-iterable batches of a dataloader for the drift evaluation: its first ``limit`` batches
    (``trainer.limit_test_batches``), or a seeded fixed subset of ``max_samples`` samples (the same
    subset in every run with that seed, batched like the dataloader)."""

    def __init__(self, loader: Any, limit: Optional[int], samples: int) -> None:
        self.loader, self.limit, self.samples = loader, limit, samples

    def __iter__(self) -> Any:
        return itertools.islice(iter(self.loader), self.limit)


def evaluation_batches(loader: Any, max_samples: Optional[int], limit: Optional[int], seed: int,
                       keep_order: bool = True) -> EvaluationBatches:
    """``keep_order``: the chosen samples in dataset order (else in the seeded random order)."""
    dataset = getattr(loader, "dataset", None)
    if max_samples is not None and dataset is not None and (max_samples < len(dataset) or not keep_order):
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(dataset), generator=generator)[:max_samples]
        chosen = (chosen.sort().values if keep_order else chosen).tolist()
        subset = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, chosen), batch_size=loader.batch_size,
                                             collate_fn=loader.collate_fn, num_workers=loader.num_workers)
        return EvaluationBatches(subset, None, len(chosen))
    if dataset is None:
        return EvaluationBatches(loader, limit, 0)
    batch = getattr(loader, "batch_size", None) or 1
    samples = len(dataset) if limit is None else min(len(dataset), limit * batch)
    return EvaluationBatches(loader, limit, samples)

"""A campaign's budget (overrides of its fit config), one job, its row, and training a job into a row.

A campaign trains every architecture with its fit config (``fit_config`` + ``fit_args``, resolved
by :mod:`lightning_nas.fit_config`); :class:`Budget` names the overrides a campaign usually sets
(its fidelity: epochs, training fraction, drift repetitions and samples, seed) and the one
setting that is the campaign's own (``threads``). A :class:`Job` carries the complete resolved
config of one row: ``fit --config`` of ``job.config`` is the same training.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Iterator, Optional

from lightning_nas.errors import UserError


@dataclass
class Budget:
    """What each architecture of a campaign gets, as overrides of the fit config (``null``: the
    fit config's value). Anything else of the recipe is set in the fit config or ``fit_args``."""

    epochs: Optional[int] = None
    """``trainer.max_epochs`` (the digital warm-up is the fit config's share of them)."""
    train_fraction: Optional[float] = None
    """``data.init_args.train_fraction``: train on a seeded subset of the training split (proxy data)."""
    n_reps: Optional[int] = None
    """``drift.n_reps``: programmings per architecture."""
    drift_samples: Optional[int] = None
    """``drift.max_samples``: evaluate drift on a seeded fixed subset of this many test samples;
    recorded in each row as ``drift_samples``."""
    limit_train_batches: Optional[int] = None
    """``trainer.limit_train_batches``: cap the batches per epoch (partial training; mostly for tests)."""
    seed: Optional[int] = None
    """``seed_everything`` and ``drift.seed``: the training and programming seed of the rows
    (replicates use their own; the data split keeps ``data.init_args.seed``)."""
    threads: Optional[int] = None
    """torch CPU threads of every job (null: the machine's cores shared out among the workers). CPU
    rows are bit-reproducible for a given seed and thread count, not across thread counts (torch's
    parallel reductions sum in another order), so a campaign that must give the same rows on any
    machine of the same CPU model fixes it (other CPU models differ a little even then); recorded in each row as ``threads``."""

    OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "epochs": ("trainer.max_epochs",), "train_fraction": ("data.init_args.train_fraction",),
        "n_reps": ("drift.n_reps",), "drift_samples": ("drift.max_samples",),
        "limit_train_batches": ("trainer.limit_train_batches",), "seed": ("seed_everything", "drift.seed"),
    }
    """The fit options each field sets."""

    def options(self) -> dict[str, Any]:
        """The fit options this budget sets (its unset fields set none)."""
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise UserError(f"budget.threads must be an integer >= 1 or null, got {self.threads!r}")
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"budget.epochs must be >= 1 (or null: the fit config's trainer.max_epochs), "
                            f"got {self.epochs}")
        return {option: getattr(self, name) for name, options in self.OPTIONS.items()
                if getattr(self, name) is not None for option in options}


def seeded(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """``config`` trained and programmed with another seed (a replicate), the data split unchanged."""
    from lightning_nas.fit_config import with_options

    return with_options(config, {option: seed for option in Budget.OPTIONS["seed"]})


@dataclass(frozen=True)
class Job:
    """One row to train: the resolved fit config (architecture, drawn hardware, seed and logger
    set) and what the row records besides its results."""

    config: dict[str, Any]
    task: str
    threads: Optional[int] = None
    """torch CPU threads fixed by the campaign (:attr:`Budget.threads`; rows depend on it)."""
    worker_threads: Optional[int] = None
    """torch CPU threads of the worker it runs on, when the campaign fixes none (None: torch's choice)."""
    fidelity: Optional[dict[str, Any]] = None
    """The rung's budget overrides (:mod:`lightning_nas.campaign.fidelity`; None: the campaign's budget)."""

    VERSION: ClassVar[int] = 2

    @property
    def arch(self) -> Any:
        from lightning_nas.space import Architecture

        return Architecture.from_dict(self.config["model"]["init_args"]["architecture"])

    @property
    def arch_id(self) -> str:
        return self.arch.id

    @property
    def seed(self) -> int:
        return self.config["seed_everything"]

    def placed(self, worker_threads: Optional[int], accelerator: str) -> "Job":
        """This job on a worker with ``worker_threads`` torch threads and ``accelerator`` (one device)."""
        from dataclasses import replace

        from lightning_nas.fit_config import with_options

        config = with_options(self.config, {"trainer.accelerator": accelerator, "trainer.devices": 1})
        return replace(self, config=config, worker_threads=worker_threads)

    def to_json(self) -> str:
        return json.dumps({"version": self.VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Job":
        data = json.loads(text)
        if data.pop("version", None) != cls.VERSION:
            raise UserError(f"a campaign job of another version ({text[:80]}...); rerun build-dataset with this version")
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Row:
    """One trained architecture as a store keeps it (JSON in the store, flattened in the CSV export;
    docs/reference/configuration.md, "Campaign rows"). Fields a row does not have (a failed row's metrics, a row written
    before ``threads`` was recorded) are ``None`` and left out of its JSON."""

    arch_id: str
    status: str = "ok"
    """``ok``, ``diverged`` (did not learn: non-finite loss or metrics) or ``failed`` (trained again)."""
    message: str = ""
    arch: Optional[dict[str, Any]] = None
    describe: Optional[str] = None
    features: Optional[list[float]] = None
    analog: Optional[dict[str, Any]] = None
    """The hardware features it was trained and evaluated with."""
    task: Optional[str] = None
    epochs: Optional[int] = None
    seed: Optional[int] = None
    wall_s: float = 0.0
    threads: Optional[int] = None
    n_params: Optional[int] = None
    val_acc: Optional[float] = None
    acc_eval: Optional[float] = None
    metrics: Optional[dict[str, float]] = None
    """``acc_1s``, ``acc_1h``, ``acc_1d``, ``acc_30d``, ``acc_1d_std``, ``avm`` (%, pp)."""
    drift_samples: Optional[int] = None
    steps: Optional[int] = None
    """Optimizer steps of the training (rows trained before it was recorded have none)."""
    curves: Optional[dict[str, list[Any]]] = None
    """Per epoch: ``epoch``, ``train_loss``, ``val_acc`` (%), ``hardware_aware`` (false in the digital
    warm-up); rows trained before curves were recorded have none."""
    fidelity: Optional[dict[str, Any]] = None
    """A cheaper rung's overrides of the campaign's budget (:mod:`lightning_nas.campaign.fidelity`);
    ``None`` for a row of the budget itself."""
    traceback: Optional[str] = None

    STATUSES: ClassVar[tuple[str, ...]] = ("ok", "diverged", "failed")

    def __post_init__(self) -> None:
        if self.status not in self.STATUSES:
            raise ValueError(f"a row's status is one of {', '.join(self.STATUSES)}, got {self.status!r}")

    @classmethod
    def from_dict(cls, data: Any) -> "Row":
        """A row from its JSON form; an unknown field is refused (a row of another format)."""
        if isinstance(data, Row):
            return data
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"row {data.get('arch_id')!r} has unknown fields {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def base_row(job: Job, status: str = "ok", message: str = "") -> dict[str, Any]:
    """The fields every row has, whatever happened to the training."""
    from lightning_nas.analog import AnalogConfig

    arch = job.arch
    analog = AnalogConfig(**job.config["model"]["init_args"]["analog"])
    return {"arch_id": arch.id, "arch": arch.to_dict(), "describe": arch.describe(),
            "features": arch.feature_vector(), "analog": analog.hardware_features(),
            "task": job.task, "epochs": job.config["trainer"]["max_epochs"], "seed": job.seed, "status": status,
            "message": message, "wall_s": 0.0, "fidelity": job.fidelity}


def failed_row(job: Job, message: str) -> Row:
    """The row of a job whose training could not run to an end (its worker died, ...)."""
    return Row(**base_row(job, "failed", message))


def train_architecture(job: Job) -> Row:
    """Train and drift-evaluate ``job`` (``fit`` of its config); returns the row (never raises for
    the architecture's own failures: divergence and errors become a status)."""
    row = base_row(job)
    start = time.perf_counter()
    try:
        with quiet_job():
            _train_into(job, row)
    except FloatingPointError as err:
        row["status"], row["message"] = "diverged", str(err)
    except Exception as err:  # noqa: BLE001 - recorded in the row, the campaign goes on
        row["status"] = "failed"
        row["message"] = f"{type(err).__name__}: {err}"
        row["traceback"] = traceback.format_exc(limit=5)
        if "out of memory" in str(err).lower():
            row["message"] = "out of memory: " + row["message"]
    row["wall_s"] = time.perf_counter() - start
    return Row(**row)


@contextlib.contextmanager
def quiet_job() -> Iterator[None]:
    """Lightning's info logs and its logging-interval warning off for one job, restored after it (a
    job may run in the campaign's own process): one line per architecture is the progress bar, and
    a small budget has fewer batches than the logging interval (rows keep no step-level logs)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _train_into(job: Job, row: dict[str, Any]) -> None:
    """Train ``job`` and fill ``row`` with what it measured (raises what training raises)."""
    import torch

    from lightning_nas.training import build, fit_and_evaluate

    if job.threads or job.worker_threads:
        torch.set_num_threads(job.threads or job.worker_threads)
    row["threads"] = torch.get_num_threads()
    model, dm, trainer = build(job.config)
    row["n_params"] = model.n_params
    result = fit_and_evaluate(model, dm, trainer)
    row["val_acc"], row["acc_eval"], row["metrics"] = result.val_acc, result.test_acc, result.drift
    row["drift_samples"], row["curves"], row["steps"] = result.drift_samples, result.curves, result.steps
    if not all(math.isfinite(v) for v in row["metrics"].values()):
        row["status"], row["message"] = "diverged", "non-finite drift metrics"

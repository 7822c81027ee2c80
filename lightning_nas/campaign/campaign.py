"""A campaign: which architectures to train with which budget on which task, into which store."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Optional

from lightning_nas.analog import HARDWARE_FEATURES, AnalogConfig
from lightning_nas.campaign.executor import Executor, Job, Row
from lightning_nas.campaign.store import RowStore
from lightning_nas.campaign.train import Budget
from lightning_nas.errors import UserError
from lightning_nas.space import SPACE_VERSION, Architecture, sample


@dataclass
class Sampling:
    n: int = 300
    """Number of architectures of the campaign."""
    method: str = "lhs"
    """``uniform`` or ``lhs`` (Latin hypercube)."""
    seed: int = 0
    max_params: Optional[int] = None
    """Skip architectures with more parameters (for the task's input shape and classes)."""
    hardware: dict[str, Any] = field(default_factory=dict)
    """Analog settings drawn per architecture (seeded by ``seed`` and the architecture's id), so one
    surrogate answers for a family of chips: a list of choices (``out_bits: [6, 8]``) or a range
    ``{min, max}`` drawn uniformly (``out_noise: {min: 0.0, max: 0.08}``); keys are the hardware
    features (``weight_noise_std``, ``inp_bits``, ``out_bits``, ``out_noise``, ``tile_size``,
    ``g_max``). Each row records the settings it was trained and evaluated with."""

    def check(self) -> None:
        if self.n < 1:
            raise UserError(f"sampling.n must be >= 1, got {self.n}")
        for name, spec in self.hardware.items():
            if name not in HARDWARE_FEATURES:
                raise UserError(f"sampling.hardware: {name!r} is not a hardware feature; use "
                                f"{', '.join(HARDWARE_FEATURES)}")
            if isinstance(spec, dict):
                if set(spec) != {"min", "max"} or not all(_number(v) for v in spec.values()) \
                        or spec["min"] > spec["max"]:
                    raise UserError(f"sampling.hardware.{name}: a range is {{min: a, max: b}} with numbers a <= b, "
                                    f"got {spec!r}")
                if name in INTEGER_FEATURES:
                    raise UserError(f"sampling.hardware.{name} takes integers: give a list of choices, not a range")
            elif not isinstance(spec, list) or not spec or not all(_number(v) for v in spec):
                raise UserError(f"sampling.hardware.{name}: give a non-empty list of numbers or {{min, max}}, "
                                f"got {spec!r}")

    def hardware_for(self, arch: Architecture) -> dict[str, Any]:
        """The analog settings drawn for ``arch`` (the same on every run of the campaign)."""
        import random

        rng = random.Random(f"{self.seed}:{arch.id}")
        drawn: dict[str, Any] = {}
        for name in sorted(self.hardware):
            spec = self.hardware[name]
            drawn[name] = rng.uniform(spec["min"], spec["max"]) if isinstance(spec, dict) else rng.choice(spec)
            if name in INTEGER_FEATURES:
                drawn[name] = int(drawn[name])
        return drawn

    def extremes(self) -> list[dict[str, Any]]:
        """Every bound or choice of each sampled setting on its own (validated up front)."""
        return [{name: value} for name, spec in self.hardware.items()
                for value in ((spec["min"], spec["max"]) if isinstance(spec, dict) else spec)]


INTEGER_FEATURES = ("inp_bits", "out_bits", "tile_size")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class Replicates:
    """A seeded subset of the campaign's architectures trained again with other seeds and
    programmed more times: the label noise the surrogate can't beat (``fit-surrogate`` reports it
    as the ceiling of its scores). Stored beside the rows, not part of the campaign's identity."""

    n: int = 0
    """Architectures replicated (0: none)."""
    seeds: list[int] = field(default_factory=lambda: [1])
    """Training seeds of the replicates (each differs from ``budget.seed``)."""
    n_reps: int = 10
    """Programmings per replicate (the drift labels' noise falls with more)."""
    seed: int = 0
    """Which architectures: a seeded choice among the campaign's."""
    first: bool = False
    """Train the replicated architectures' rows and their replicates before the other rows, so that a
    campaign built over several runs has its label-noise ceiling early (the rows are the same)."""

    def check(self, budget_seed: int) -> None:
        if self.n < 0 or self.n_reps < 1:
            raise UserError(f"replicates.n must be >= 0 and replicates.n_reps >= 1, got {self.n} and {self.n_reps}")
        if self.n and (not self.seeds or budget_seed in self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise UserError(f"replicates.seeds must be distinct training seeds other than budget.seed ({budget_seed}), "
                            f"got {self.seeds}")


@dataclass
class Campaign:
    """Everything that defines a campaign's rows (``data`` is the datamodule's class_path/init_args)."""

    data: dict[str, Any]
    analog: AnalogConfig
    budget: Budget
    sampling: Sampling
    log_dir: Optional[str] = None
    """TensorBoard logs, one folder per architecture (``None``: no logs)."""
    replicates: Replicates = field(default_factory=Replicates)

    def __post_init__(self) -> None:
        from lightning_nas.conversion import checked_rpu_config

        checked_rpu_config(self.analog)  # the hardware and its overrides, validated before anything runs
        self.sampling.check()
        self.replicates.check(self.budget.seed)
        for setting in self.sampling.extremes():  # every sampled setting must be valid hardware too
            try:
                checked_rpu_config(replace(self.analog, **setting))
            except UserError as exc:
                raise UserError(f"sampling.hardware: {setting}: {exc}") from None
        self.budget.check()

    def identity(self) -> dict[str, Any]:
        """What makes rows comparable: task, hardware, budget and space version (not n or workers)."""
        from lightning_nas.classpath import resolve

        defaults = getattr(resolve(self.data["class_path"]), "task_defaults", {})
        args = self.data.get("init_args", {})
        init = {k: defaults[k] if v is None and k in defaults else v  # None = the task's default, recorded as it
                for k, v in args.items() if k not in ("num_workers", "batch_size")}
        # The batch size changes what a budget of epochs trains (optimizer steps): recorded when it is
        # not the task's default, so stores made before it was recorded (all with the default) still match.
        # The task defaults are pinned by tests/test_campaign.py (changing one would let an old store
        # accept rows of another batch size). Datamodules without task defaults record none, as before.
        if "batch_size" in defaults and args.get("batch_size") not in (None, defaults["batch_size"]):
            init["batch_size"] = args["batch_size"]
        hardware = {k: v for k, v in asdict(self.analog.resolved()).items() if k != "implementation"}
        budget = {k: v for k, v in asdict(self.budget).items()  # unset newer fields: older stores still match
                  if not (k in ("drift_samples", "threads") and v is None)}
        identity = {"task": self.data["class_path"], "task_args": init, "analog": hardware,
                    "budget": budget, "space_version": SPACE_VERSION}
        if self.sampling.hardware:  # omitted when empty: stores made before it still match
            identity["hardware_sampling"] = {"seed": self.sampling.seed, "ranges": self.sampling.hardware}
        return identity

    def architectures(self, input_shape, num_classes) -> list[Architecture]:
        s = self.sampling
        return sample(s.n, seed=s.seed, method=s.method, max_params=s.max_params, in_shape=input_shape,
                      n_classes=num_classes)

    def analog_for(self, arch: Architecture) -> AnalogConfig:
        """The campaign's analog config with the settings drawn for ``arch`` (``sampling.hardware``)."""
        return replace(self.analog, **self.sampling.hardware_for(arch)) if self.sampling.hardware else self.analog

    def jobs(self, archs: list[Architecture], task: str, threads: Optional[int], accelerator: str) -> list[Job]:
        return [{"arch": a.to_dict(), "budget": asdict(self.budget), "analog": asdict(self.analog_for(a)),
                 "data": self.data, "task": task, "log_dir": self.log_dir, "threads": threads,
                 "accelerator": accelerator, "devices": 1} for a in archs]


def replicated(campaign: Campaign, archs: list[Architecture]) -> list[Architecture]:
    """The architectures ``campaign.replicates`` trains again: a seeded choice (none when ``n`` is 0)."""
    import random

    r = campaign.replicates
    return random.Random(r.seed).sample(archs, min(r.n, len(archs))) if r.n else []


def replicate_jobs(campaign: Campaign, archs: list[Architecture], store: RowStore, task: str,
                   threads: Optional[int], accelerator: str) -> list[Job]:
    """Jobs of the replicates not stored yet: a seeded choice of ``replicates.n`` architectures,
    each with every replicate seed and ``replicates.n_reps`` programmings."""
    r = campaign.replicates
    chosen = replicated(campaign, archs)
    done = store.replicate_keys()
    jobs = []
    for seed in r.seeds:
        todo = [a for a in chosen if (a.id, seed) not in done]
        for job in campaign.jobs(todo, task, threads, accelerator):
            job["budget"] = {**job["budget"], "seed": seed, "n_reps": r.n_reps}
            job["data_seed"] = campaign.budget.seed  # the same data split as the rows: only training differs
            jobs.append(job)
    return jobs


def architectures_to_train(archs: list[Architecture], store: RowStore) -> list[Architecture]:
    """The architectures without an ``ok`` or ``diverged`` row (failed rows are tried again)."""
    done = store.ids(statuses=("ok", "diverged"))
    return [a for a in archs if a.id not in done]


def threads_per_worker(workers: int, gpus: int, requested: Optional[int] = None) -> Optional[int]:
    """torch threads of each local worker: ``requested``, else the CPU cores shared out (None on GPUs)."""
    if requested:
        return requested
    return None if gpus else max(1, (os.cpu_count() or 1) // max(1, workers))


def run_campaign(campaign: Campaign, store: RowStore, executor: Executor, *, threads: Optional[int] = None,
                 accelerator: str = "cpu", on_start: Callable[[int, int, str], None] = lambda total, done, task: None,
                 on_row: Callable[[Row], None] = lambda row: None,
                 on_replicates: Callable[[int], None] = lambda n: None) -> None:
    """Bind ``store`` to the campaign, then train every architecture it lacks with ``executor``.

    ``on_start(total, already_done, task)`` is called before training rows, ``on_row(row)`` after each
    row is stored (progress reporting), ``on_replicates(n)`` before the ``n`` replicates still to
    train (``campaign.replicates``; they come after the rows, or with ``replicates.first`` after the
    replicated architectures' rows and before the others, which start with ``on_start`` again)."""
    from lightning_nas.classpath import instantiate
    from lightning_nas.data import task_name

    dm = instantiate(campaign.data)  # validates the task arguments and gives the input shape
    dm.setup()  # the split sizes, for the task record (a missing dataset fails here, before the store is bound)
    store.bind(campaign.identity())
    store.set_task(dm.task_info().to_dict())
    archs = campaign.architectures(dm.input_shape, dm.num_classes)
    todo = architectures_to_train(archs, store)
    task = task_name(type(dm))
    later: list[Architecture] = []
    if campaign.replicates.first:
        early = {a.id for a in replicated(campaign, archs)}
        todo, later = [a for a in todo if a.id in early], [a for a in todo if a.id not in early]
    on_start(len(archs), len(archs) - len(todo) - len(later), task)

    def stored(row: Row) -> None:
        try:
            store.add(row)
        except sqlite3.Error as exc:  # disk full, store removed or damaged: stop, keep what is stored
            raise UserError(f"could not store the row of {row['arch_id']} ({exc}); the {len(store)} rows already "
                            f"in {store.path} are kept. Fix the cause (free disk space) and rerun the same "
                            "command: it trains the rest, this architecture included") from None
        on_row(row)

    executor.run(campaign.jobs(todo, task, threads, accelerator), stored)
    replicates = replicate_jobs(campaign, archs, store, task, threads, accelerator)
    if replicates:
        on_replicates(len(replicates))

        def stored_replicate(row: Row) -> None:
            try:
                store.add_replicate(row)
            except sqlite3.Error as exc:
                raise UserError(f"could not store the replicate of {row['arch_id']} ({exc}); rerun the same command "
                                "when the cause is fixed") from None
            on_row(row)

        executor.run(replicates, stored_replicate)
    if later:
        on_start(len(archs), len(archs) - len(later), task)
        executor.run(campaign.jobs(later, task, threads, accelerator), stored)

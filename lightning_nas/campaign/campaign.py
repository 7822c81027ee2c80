"""A campaign: which architectures to train with which fit config and budget, into which store."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Optional

from lightning_nas.analog import HARDWARE_FEATURES, AnalogConfig
from lightning_nas.campaign.executor import Executor
from lightning_nas.campaign.fidelity import Fidelity, label, promoted
from lightning_nas.campaign.store import RowStore
from lightning_nas.campaign.train import Budget, Job, Row, seeded
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
    """Everything that defines a campaign's rows: ``config`` is the resolved fit config every row
    trains with (:mod:`lightning_nas.fit_config`; the campaign's budget applied), each row with its
    own architecture (and hardware, with ``sampling.hardware``)."""

    config: dict[str, Any]
    sampling: Sampling
    log_dir: Optional[str] = None
    """TensorBoard logs, one folder per architecture (``None``: no logs)."""
    replicates: Replicates = field(default_factory=Replicates)
    threads: Optional[int] = None
    """torch threads of every job (:attr:`Budget.threads`)."""
    fidelity: Fidelity = field(default_factory=Fidelity)
    """Cheaper rungs before the budget's, with successive halving (:mod:`lightning_nas.campaign.fidelity`)."""

    @classmethod
    def from_fit_config(cls, fit_config: Optional[str], fit_args: list[str], budget: Budget, sampling: Sampling,
                        log_dir: Optional[str] = None, replicates: Optional[Replicates] = None,
                        fidelity: Optional[Fidelity] = None) -> "Campaign":
        """The campaign that trains with ``fit --config FIT_CONFIG FIT_ARGS`` and ``budget``'s overrides."""
        from lightning_nas.fit_config import check, resolve, with_options

        options = {**budget.options(), **CAMPAIGN_OPTIONS, "drift.save_json": bool(log_dir)}
        config = check(with_options(resolve(fit_config, fit_args), options))
        seed = config.get("seed_everything")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UserError(f"a campaign needs an integer seed, got seed_everything {seed!r}: rows must be "
                            "reproducible; set budget.seed (or seed_everything in the fit config)")
        return cls(config, sampling, log_dir, replicates or Replicates(), budget.threads, fidelity or Fidelity())

    @property
    def analog(self) -> AnalogConfig:
        """The fit config's analog hardware (before ``sampling.hardware``)."""
        return AnalogConfig(**self.config["model"]["init_args"]["analog"])

    @property
    def seed(self) -> int:
        return self.config["seed_everything"]

    def __post_init__(self) -> None:
        from lightning_nas.conversion import checked_rpu_config

        checked_rpu_config(self.analog)  # the hardware and its overrides, validated before anything runs
        self.sampling.check()
        self.replicates.check(self.seed)
        for setting in self.sampling.extremes():  # every sampled setting must be valid hardware too
            try:
                checked_rpu_config(replace(self.analog, **setting))
            except UserError as exc:
                raise UserError(f"sampling.hardware: {setting}: {exc}") from None
        self.fidelity.check()
        if self.fidelity.rungs and self.replicates.first:
            raise UserError("replicates.first can't be used with fidelity.rungs: the replicated architectures are "
                            "chosen among those promoted to the full budget; set replicates.first false")
        self.check_recipe()
        for i, rung in enumerate(self.fidelity.rungs):
            try:
                self.check_recipe(self.rung_config(rung))
            except UserError as exc:
                raise UserError(f"fidelity.rungs[{i}] ({label(rung)}): {exc}") from None

    def check_recipe(self, config: Optional[dict[str, Any]] = None) -> None:
        """Refuse a recipe that every row would fail with, before a store is bound to it: drift
        settings, and a digital warm-up that leaves no hardware-aware epoch."""
        from lightning_nas.callbacks import DriftEvaluation
        from lightning_nas.fit_config import warmup_epochs

        config = config or self.config
        DriftEvaluation(**config["drift"])  # raises on bad drift settings
        epochs = config["trainer"]["max_epochs"]
        warmup = warmup_epochs(config["model"]["init_args"], epochs)
        if epochs is None or epochs < 1 or warmup >= epochs:
            raise UserError(f"the campaign trains {epochs} epochs with {warmup} digital warm-up epochs: it needs "
                            "trainer.max_epochs >= 1 (budget.epochs) and a warm-up that leaves hardware-aware "
                            "epochs (model.init_args.digital_warmup_epochs in fit_args)")

    def rung_config(self, rung: Optional[dict[str, Any]]) -> dict[str, Any]:
        """The resolved fit config of a cheaper rung: the campaign's with the rung's budget overrides."""
        from lightning_nas.fit_config import with_options

        return with_options(self.config, Budget(**rung).options()) if rung else self.config

    def identity(self) -> dict[str, Any]:
        """What makes rows comparable: task, hardware, the training the fit config describes (its
        canonical form, :func:`lightning_nas.fit_config.canonical`), threads and space version; not
        n, workers or where it logs. ``sha256`` is a short hash of the rest."""
        from lightning_nas.fit_config import canonical

        training = canonical(self.config)
        if self.threads is not None:
            training["threads"] = self.threads
        return versioned({"task": self.config["data"]["class_path"], "task_args": task_args(self.config["data"]),
                          "analog": hardware_record(self.analog), "training": training,
                          "space_version": SPACE_VERSION, **self._sampling_identity()})

    def _sampling_identity(self) -> dict[str, Any]:
        if not self.sampling.hardware:  # omitted when empty: stores made before it still match
            return {}
        return {"hardware_sampling": {"seed": self.sampling.seed, "ranges": self.sampling.hardware}}

    def architectures(self, input_shape, num_classes) -> list[Architecture]:
        s = self.sampling
        return sample(s.n, seed=s.seed, method=s.method, max_params=s.max_params, in_shape=input_shape,
                      n_classes=num_classes)

    def analog_for(self, arch: Architecture) -> AnalogConfig:
        """The campaign's analog config with the settings drawn for ``arch`` (``sampling.hardware``)."""
        return replace(self.analog, **self.sampling.hardware_for(arch)) if self.sampling.hardware else self.analog

    def job_config(self, arch: Architecture, rung: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The resolved fit config of ``arch``'s row (at a cheaper ``rung``): ``fit --config`` of it
        trains the same row. A rung's run logs beside the row's, in version folder ``rung-<label>``."""
        from lightning_nas.fit_config import with_options

        logger: Any = False
        if self.log_dir:
            logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                      "init_args": {"save_dir": self.log_dir, "name": arch.id,
                                    "version": f"rung-{label(rung)}" if rung else ""}}
        return with_options(self.rung_config(rung), {"model.init_args.architecture": arch.to_dict(),
                                                     "model.init_args.analog": asdict(self.analog_for(arch)),
                                                     "trainer.logger": logger})

    def jobs(self, archs: list[Architecture], task: str, threads: Optional[int], accelerator: str,
             rung: Optional[dict[str, Any]] = None) -> list[Job]:
        return [Job(self.job_config(a, rung), task, self.threads, fidelity=rung or None).placed(threads, accelerator)
                for a in archs]


CAMPAIGN_OPTIONS: dict[str, Any] = {
    "trainer.enable_checkpointing": False, "trainer.enable_progress_bar": False,
    "trainer.enable_model_summary": False, "trainer.num_sanity_val_steps": 0, "drift.verbose": False,
}
"""What every campaign row runs with besides its fit config: no checkpoints, no per-run progress
bars or summaries (one line per architecture is the campaign's progress bar), no sanity validation
(it would move the random stream), drift results in the row instead of printed."""


def task_args(data: dict[str, Any]) -> dict[str, Any]:
    """A datamodule's arguments as a campaign identity records them: ``None`` as the task's default,
    without ``num_workers``, and ``batch_size`` only when it is not the task's default."""
    from lightning_nas.classpath import resolve

    defaults = getattr(resolve(data["class_path"]), "task_defaults", {})
    args = data.get("init_args") or {}
    init = {k: defaults[k] if v is None and k in defaults else v  # None = the task's default, recorded as it
            for k, v in args.items() if k not in ("num_workers", "batch_size")}
    # The batch size changes what a budget of epochs trains (optimizer steps): recorded when it is
    # not the task's default, so stores made before it was recorded (all with the default) still match.
    # The task defaults are pinned by tests/test_campaign.py (changing one would let an old store
    # accept rows of another batch size). Datamodules without task defaults record none, as before.
    if "batch_size" in defaults and args.get("batch_size") not in (None, defaults["batch_size"]):
        init["batch_size"] = args["batch_size"]
    return init


def hardware_record(analog: AnalogConfig) -> dict[str, Any]:
    """The resolved hardware settings of a campaign identity (not the implementation, which gives
    the same analog model)."""
    return {k: v for k, v in asdict(analog.resolved()).items() if k != "implementation"}


IDENTITY_VERSION = 2


def versioned(identity: dict[str, Any]) -> dict[str, Any]:
    """``identity`` with its format version and the short sha256 of its content."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return {**identity, "version": IDENTITY_VERSION, "sha256": digest}


def upgrade_identity(old: dict[str, Any]) -> dict[str, Any]:
    """A version-1 identity (a store written before campaigns trained through a fit config: task,
    task_args, analog, budget, space_version) as the identity of the same training today. Its
    budget's fields were: epochs, digital_warmup_epochs, train_fraction, n_reps, t_inference, lr,
    seed, limit_train_batches, drift_samples, threads; rows used the budget's seed and train
    fraction for the data too, every other module, trainer and drift setting at its default.
    One difference remains: rows are now seeded as ``fit`` seeds (``seed_everything(seed,
    workers=True)``), which changes only the augmentation streams of data-loader worker processes
    (tasks with ``num_workers > 0``), not digits (no workers)."""
    from lightning_nas.fit_config import canonical, defaults, with_options

    if "version" in old:
        return old
    b = old["budget"]
    config = with_options(defaults(), {
        "seed_everything": b["seed"], "trainer.max_epochs": b["epochs"],
        "trainer.limit_train_batches": b.get("limit_train_batches"), "model.init_args.lr": b["lr"],
        "model.init_args.digital_warmup_epochs": b["digital_warmup_epochs"], "drift.n_reps": b["n_reps"],
        "drift.t_inference": b["t_inference"], "drift.seed": b["seed"], "drift.max_samples": b.get("drift_samples")})
    training = canonical(config)
    if b.get("threads") is not None:
        training["threads"] = b["threads"]
    args = {**old.get("task_args", {}), "train_fraction": b["train_fraction"], "seed": b["seed"]}
    rest = {k: v for k, v in old.items() if k not in ("budget", "task_args")}
    return versioned({**rest, "task_args": args, "training": training})


def replicated(campaign: Campaign, archs: list[Architecture]) -> list[Architecture]:
    """The architectures ``campaign.replicates`` trains again: a seeded choice (none when ``n`` is 0)."""
    import random

    r = campaign.replicates
    return random.Random(r.seed).sample(archs, min(r.n, len(archs))) if r.n else []


def replicate_jobs(campaign: Campaign, archs: list[Architecture], store: RowStore, task: str,
                   threads: Optional[int], accelerator: str) -> list[Job]:
    """Jobs of the replicates not stored yet: a seeded choice of ``replicates.n`` architectures,
    each with every replicate seed and ``replicates.n_reps`` programmings."""
    from lightning_nas.fit_config import with_options

    r = campaign.replicates
    chosen = replicated(campaign, archs)
    done = store.replicate_keys()
    jobs = []
    for seed in r.seeds:
        todo = [a for a in chosen if (a.id, seed) not in done]
        for job in campaign.jobs(todo, task, threads, accelerator):
            config = with_options(seeded(job.config, seed), {"drift.n_reps": r.n_reps})
            if isinstance(config["trainer"]["logger"], dict):  # beside the row's run, not over it
                config = with_options(config, {"trainer.logger.init_args.version": f"replicate_seed{seed}"})
            jobs.append(replace(job, config=config))  # the same data split as the rows: only training differs
    return jobs


def architectures_to_train(archs: list[Architecture], store: RowStore) -> list[Architecture]:
    """The architectures without an ``ok`` or ``diverged`` row (failed rows are tried again)."""
    done = store.ids(statuses=("ok", "diverged"))
    return [a for a in archs if a.id not in done]


def check_workers_per_gpu(workers_per_gpu: int) -> None:
    if isinstance(workers_per_gpu, bool) or not isinstance(workers_per_gpu, int) or workers_per_gpu < 1:
        raise UserError(f"workers_per_gpu must be an integer >= 1, got {workers_per_gpu!r}")


def local_workers(workers: Optional[int], workers_per_gpu: int, gpus: int) -> int:
    """Worker processes of a local campaign on ``gpus`` GPUs (0: on the CPU): ``workers`` when given,
    else ``workers_per_gpu`` per GPU (each worker pinned to one device, round robin:
    :func:`~lightning_nas.campaign.local_executor.gpu_of_worker`), else one on the CPU.

    ``workers_per_gpu`` above 1 packs several trainings on each GPU (a small network leaves a large
    GPU mostly idle); it is refused with ``workers`` (the worker count comes from one of them) and
    without GPUs (on the CPU the count is ``workers``)."""
    check_workers_per_gpu(workers_per_gpu)
    if workers is not None and workers < 0:
        raise UserError(f"workers must be >= 0, got {workers}")
    if workers_per_gpu > 1:
        if workers is not None:
            raise UserError(f"workers ({workers}) and workers_per_gpu ({workers_per_gpu}) both set the number of "
                            "worker processes: give one of them (workers_per_gpu N runs N per GPU, GPUs x N in all; "
                            "--workers null unsets a config file's workers)")
        if not gpus:
            raise UserError(f"workers_per_gpu ({workers_per_gpu}) needs GPUs, and this campaign trains on the CPU "
                            "(accelerator cpu, or no CUDA device visible); on the CPU set workers instead")
    if workers is not None:
        return workers
    return gpus * workers_per_gpu if gpus else 1


def threads_per_worker(workers: int, gpus: int, requested: Optional[int] = None) -> Optional[int]:
    """torch threads of each local worker: ``requested``, else the machine's CPU cores shared out among
    the workers, GPU workers too (``gpus`` > 0: with several workers per GPU each would otherwise
    take every core for its CPU work)."""
    if requested:
        return requested
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def prepare_store(campaign: Campaign, store: RowStore) -> tuple[Any, str]:
    """Check the campaign's task (its datamodule set up: a missing dataset fails here), bind ``store``
    to the campaign and record the task; returns the datamodule and the task's name."""
    from lightning_nas.classpath import instantiate_typed
    from lightning_nas.data import TaskDataModule, task_name

    dm = instantiate_typed(TaskDataModule, campaign.config["data"], "data")  # validates the task arguments and gives the input shape
    dm.setup()  # the split sizes, for the task record (a missing dataset fails here, before the store is bound)
    store.bind(campaign.identity(), upgrade=upgrade_identity)
    store.set_task(dm.task_info().to_dict())
    return dm, task_name(type(dm))


def run_campaign(campaign: Campaign, store: RowStore, executor: Executor, *, threads: Optional[int] = None,
                 accelerator: str = "cpu", on_start: Callable[..., None] = lambda total, done, task, stage="": None,
                 on_row: Callable[[Row], None] = lambda row: None,
                 on_replicates: Callable[[int], None] = lambda n: None) -> None:
    """Bind ``store`` to the campaign, then train every architecture it lacks with ``executor``.

    ``on_start(total, already_done, task, stage)`` is called before training rows (``stage``: the
    rung's label, ``full`` for the budget's rows when the campaign has rungs, else empty),
    ``on_row(row)`` (a :class:`Row`) after each row is stored (progress reporting), ``on_replicates(n)``
    before the ``n`` replicates still to train (``campaign.replicates``; they come after the rows, or
    with ``replicates.first`` after the replicated architectures' rows and before the others, which
    start with ``on_start`` again). With ``campaign.fidelity.rungs`` the architectures go through the
    rungs first (successive halving) and only the promoted ones get rows of the full budget."""
    dm, task = prepare_store(campaign, store)
    archs = campaign.architectures(dm.input_shape, dm.num_classes)
    archs = run_rungs(campaign, archs, store, executor, task, threads, accelerator, on_start, on_row)
    todo = architectures_to_train(archs, store)
    later: list[Architecture] = []
    early = {a.id for a in replicated(campaign, archs)} if campaign.replicates.first else set()
    if early:  # the replicated architectures first (none chosen: one phase, announced once)
        todo, later = [a for a in todo if a.id in early], [a for a in todo if a.id not in early]
    stage = "full" if campaign.fidelity.rungs else ""
    on_start(len(archs), len(archs) - len(todo) - len(later), task, stage)

    def stored(row: Row) -> None:
        row = Row.from_dict(row)
        try:
            store.add(row)
        except sqlite3.Error as exc:  # disk full, store removed or damaged: stop, keep what is stored
            raise UserError(f"could not store the row of {row.arch_id} ({exc}); the {len(store)} rows already "
                            f"in {store.path} are kept. Fix the cause (free disk space) and rerun the same "
                            "command: it trains the rest, this architecture included") from None
        on_row(row)

    executor.run(campaign.jobs(todo, task, threads, accelerator), stored)
    replicates = replicate_jobs(campaign, archs, store, task, threads, accelerator)
    if replicates:
        on_replicates(len(replicates))

        def stored_replicate(row: Row) -> None:
            row = Row.from_dict(row)
            try:
                store.add_replicate(row)
            except sqlite3.Error as exc:
                raise UserError(f"could not store the replicate of {row.arch_id} ({exc}); rerun the same command "
                                "when the cause is fixed") from None
            on_row(row)

        executor.run(replicates, stored_replicate)
    if later:
        on_start(len(archs), len(archs) - len(later), task, stage)
        executor.run(campaign.jobs(later, task, threads, accelerator), stored)


def run_rungs(campaign: Campaign, archs: list[Architecture], store: RowStore, executor: Executor, task: str,
              threads: Optional[int], accelerator: str, on_start: Callable[..., None],
              on_row: Callable[[Row], None]) -> list[Architecture]:
    """Successive halving over ``campaign.fidelity.rungs``: train the candidates of each rung that
    the store lacks, then promote the best ``1/eta``. Returns the architectures promoted to the full
    budget (``archs`` itself without rungs)."""
    fidelity = campaign.fidelity
    sizes = fidelity.sizes(len(archs))
    candidates = archs
    for rung, n_next in zip(fidelity.rungs, sizes[1:]):
        done = store.fidelity_ids(rung)
        todo = [a for a in candidates if a.id not in done]
        on_start(len(candidates), len(candidates) - len(todo), task, label(rung))

        def stored(row: Row) -> None:
            row = Row.from_dict(row)
            try:
                store.add_fidelity(row)
            except sqlite3.Error as exc:
                raise UserError(f"could not store the {label(row.fidelity)} row of {row.arch_id} ({exc}); rerun the "
                                "same command when the cause is fixed: it trains what the store lacks") from None
            on_row(row)

        executor.run(campaign.jobs(todo, task, threads, accelerator, rung), stored)
        rows = {r["arch_id"]: r for r in store.fidelity_rows(rung)}
        scores = fidelity.scores(candidates, rows, lambda a: campaign.analog_for(a).hardware_features())
        candidates = promoted(candidates, scores, n_next)
    return candidates

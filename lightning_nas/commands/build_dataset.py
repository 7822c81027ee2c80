"""``python -m lightning_nas build-dataset --config configs/surrogate_digits.yaml``.

Samples architectures (seeded uniform or Latin-hypercube, under a parameter budget),
trains each one hardware-aware with the campaign budget in N worker processes,
evaluates drift and stores one row per architecture in a crash-safe SQLite store.
Running the same command again continues where it stopped.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from typing import Any, Callable, Optional

from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.analog import AnalogConfig
from lightning_nas.campaign.ray_executor import RayOptions, run_jobs_ray
from lightning_nas.campaign.store import RowStore, export
from lightning_nas.campaign.train import Budget, base_row, train_architecture
from lightning_nas.classpath import instantiate
from lightning_nas.data import TaskDataModule
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


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m lightning_nas build-dataset", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_subclass_arguments(TaskDataModule, "data", required=True,
                                  help="The task's datamodule (class_path + init_args), as for fit.")
    parser.add_dataclass_arguments(AnalogConfig, "analog")
    parser.add_dataclass_arguments(Sampling, "sampling")
    parser.add_dataclass_arguments(Budget, "budget")
    parser.add_argument("--store", type=str, default="runs/campaign/rows.sqlite",
                        help="SQLite file of the rows (created, or continued when it exists).")
    parser.add_argument("--campaign_dir", type=Optional[str], default="runs/campaign",
                        help="TensorBoard logs, one folder per architecture (null: no logs).")
    parser.add_argument("--workers", type=Optional[int], default=None,
                        help="Worker processes (0: train in this process). Default: one per GPU, else 1.")
    parser.add_argument("--accelerator", type=str, default="auto", help="cpu, gpu or auto (GPUs when present).")
    parser.add_argument("--threads_per_worker", type=Optional[int], default=None,
                        help="torch threads of each local worker (default: CPU cores / workers).")
    parser.add_argument("--executor", type=str, default="local",
                        help="local (worker processes on this machine) or ray (tasks on a Ray cluster).")
    parser.add_dataclass_arguments(RayOptions, "ray")
    parser.add_argument("--export", type=Optional[str], default=None,
                        help="Also write all rows to this .csv or .parquet file at the end.")
    return parser


def campaign_identity(data: dict[str, Any], analog: AnalogConfig, budget: Budget) -> dict[str, Any]:
    """What makes rows comparable: task, hardware, budget and space version (not n or workers)."""
    init = {k: v for k, v in data.get("init_args", {}).items() if k not in ("num_workers", "batch_size")}
    hardware = {k: v for k, v in asdict(analog.resolved()).items() if k != "implementation"}
    return {"task": data["class_path"], "task_args": init, "analog": hardware, "budget": asdict(budget),
            "space_version": SPACE_VERSION}


def task_name(data: dict[str, Any]) -> str:
    from lightning_nas.data import DATAMODULES

    for name, cls in DATAMODULES.items():
        if data["class_path"].endswith(cls.__name__):
            return name
    return data["class_path"]


def plan(cfg: Any, store: RowStore, input_shape, num_classes) -> list[Architecture]:
    s = cfg.sampling
    archs = sample(s.n, seed=s.seed, method=s.method, max_params=s.max_params, in_shape=input_shape,
                   n_classes=num_classes)
    done = store.ids(statuses=("ok", "diverged"))  # failed rows are tried again
    return [a for a in archs if a.id not in done]


def run_jobs(jobs: list[dict[str, Any]], workers: int, on_row: Callable[[dict[str, Any]], None],
             train: Callable[[dict[str, Any]], dict[str, Any]] = train_architecture, gpus: int = 0) -> None:
    """Run ``train`` on every job (in this process when ``workers == 0``) and hand each row
    to ``on_row`` as it finishes.

    A worker process that dies breaks the whole pool, so the jobs it held can't tell who
    crashed. They are re-run one at a time, each alone in a fresh one-worker pool: a job
    that crashes alone twice is recorded as failed; the others train normally.
    """
    if workers == 0:
        for job in jobs:
            on_row(train(job))
        return
    pending, suspects = list(jobs), []
    crashes: dict[str, int] = {}
    while pending or suspects:
        if suspects:
            job = suspects.pop(0)
            with _pool(1, gpus) as pool:
                try:
                    on_row(pool.submit(train, job).result())
                except BrokenProcessPool:
                    key = Architecture.from_dict(job["arch"]).id
                    crashes[key] = crashes.get(key, 0) + 1
                    if crashes[key] >= 2:
                        on_row(failed_row(job, "its worker process died (killed or crashed) twice"))
                    else:
                        suspects.append(job)
            continue
        with _pool(workers, gpus) as pool:
            running: dict[Future, dict[str, Any]] = {}
            broken = False
            while (pending or running) and not broken:
                while pending and len(running) < 2 * workers:
                    job = pending.pop(0)
                    running[pool.submit(train, job)] = job
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    try:
                        on_row(future.result())
                    except BrokenProcessPool:
                        broken = True
                        suspects.append(job)
            suspects.extend(running.values())  # in flight when the pool broke


def _pool(workers: int, gpus: int) -> ProcessPoolExecutor:
    """Spawned workers; with GPUs each worker takes its own device for all its jobs."""
    ctx = get_context("spawn")
    if not gpus:
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    counter = ctx.Value("i", 0)
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_claim_gpu,
                               initargs=(counter, gpus))


def _claim_gpu(counter: Any, gpus: int) -> None:
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ["CUDA_VISIBLE_DEVICES"] = str(index % gpus)


def failed_row(job: dict[str, Any], message: str) -> dict[str, Any]:
    return base_row(job, "failed", message)


def check_budget(budget: Budget) -> None:
    """Catch a bad budget before a campaign (and its store) is bound to it."""
    from callbacks import DriftEvaluation

    if budget.epochs < 1 or not 0 <= budget.digital_warmup_epochs <= budget.epochs:
        raise UserError(f"budget.epochs must be >= 1 and budget.digital_warmup_epochs in 0..epochs, got "
                        f"{budget.epochs} and {budget.digital_warmup_epochs}")
    if not 0 < budget.train_fraction <= 1:
        raise UserError(f"budget.train_fraction must be in (0, 1], got {budget.train_fraction}")
    if budget.lr <= 0:
        raise UserError(f"budget.lr must be > 0, got {budget.lr}")
    DriftEvaluation(t_inference=budget.t_inference, n_reps=budget.n_reps)  # raises on bad drift settings


def main(argv: list[str]) -> None:
    parser = build_parser()
    cfg = parser.parse_args(argv)
    data = cfg.data.as_dict()
    analog = AnalogConfig(**cfg.analog.as_dict())
    analog.resolved()  # validate before anything runs
    budget = Budget(**cfg.budget.as_dict())
    if cfg.workers is not None and cfg.workers < 0:
        raise UserError(f"workers must be >= 0, got {cfg.workers}")
    if cfg.executor not in ("local", "ray"):
        raise UserError(f"unknown executor {cfg.executor!r}; use local or ray")
    if cfg.sampling.n < 1:
        raise UserError(f"sampling.n must be >= 1, got {cfg.sampling.n}")
    check_budget(budget)
    dm = instantiate(data)  # validates the task arguments and gives the input shape
    import torch

    gpus = torch.cuda.device_count() if cfg.accelerator in ("auto", "gpu") else 0
    if cfg.accelerator == "gpu" and gpus == 0:
        raise UserError("accelerator=gpu but no CUDA device is visible; use --accelerator cpu")
    workers = cfg.workers if cfg.workers is not None else (gpus or 1)
    with RowStore(cfg.store) as store:
        store.bind(campaign_identity(data, analog, budget))
        todo = plan(cfg, store, dm.input_shape, dm.num_classes)
        total, done = cfg.sampling.n, cfg.sampling.n - len(todo)
        where = (f"Ray tasks ({cfg.ray.num_cpus} CPU, {cfg.ray.num_gpus} GPU each)" if cfg.executor == "ray"
                 else f"{workers or 'no'} worker process(es)")
        print(f"campaign: {total} architectures of task {task_name(data)}, {done} already in {cfg.store}, "
              f"{len(todo)} to train with {where}", file=sys.stderr)
        threads = cfg.threads_per_worker or (max(1, (os.cpu_count() or 1) // max(1, workers)) if not gpus else None)
        jobs = []
        for arch in todo:
            job = {"arch": arch.to_dict(), "budget": asdict(budget), "analog": asdict(analog), "data": data,
                   "task": task_name(data), "log_dir": cfg.campaign_dir, "threads": threads,
                   "accelerator": "gpu" if gpus else "cpu", "devices": 1}
            jobs.append(job)
        from tqdm import tqdm

        failures = 0
        with tqdm(total=total, initial=done, desc="architectures", unit="arch", dynamic_ncols=True) as bar:
            def on_row(row: dict[str, Any]) -> None:
                nonlocal failures
                store.add(row)
                failures += row["status"] != "ok"
                bar.set_postfix(failed=failures, last=f"{row['arch_id']} {row['status']}")
                bar.update(1)

            if cfg.executor == "ray":
                run_jobs_ray(jobs, on_row, train_architecture, RayOptions(**cfg.ray.as_dict()), failed_row)
            else:
                run_jobs(jobs, workers, on_row, train_architecture, gpus)
        ok = len(store.rows("ok"))
        print(f"done: {len(store)} rows in {cfg.store} ({ok} ok, {len(store) - ok} diverged/failed)",
              file=sys.stderr)
        if cfg.export:
            print(f"exported {export(store.rows(), cfg.export)}", file=sys.stderr)


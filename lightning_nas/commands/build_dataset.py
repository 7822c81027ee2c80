"""``python -m lightning_nas build-dataset --config configs/digits/campaign.yaml``.

Samples architectures (seeded uniform or Latin-hypercube, under a parameter budget),
trains each one hardware-aware with the task's fit config (``fit_config`` + ``fit_args``) and the
campaign budget's overrides in N worker processes, evaluates drift and stores one row per
architecture in a crash-safe SQLite store. Running the same command again continues where it stopped.
With ``fidelity.rungs`` the architectures first go through cheaper trainings (successive halving)
and only the best reach the full budget (:mod:`lightning_nas.campaign.fidelity`).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Union

from jsonargparse import ActionConfigFile

from lightning_nas.campaign.campaign import (Campaign, Replicates, Sampling, check_workers_per_gpu, local_workers,
                                             run_campaign, threads_per_worker)
from lightning_nas.campaign.fidelity import Fidelity, label
from lightning_nas.campaign.ray_executor import RayOptions, packed
from lightning_nas.campaign.store import RowStore, export
from lightning_nas.campaign.train import Budget, Row
from lightning_nas.checkout import refuse_installed_copy
from lightning_nas.errors import UserError
from lightning_nas.parsing import CommandParser, take_fit_options


def build_parser() -> CommandParser:
    parser = CommandParser(command="build-dataset", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--fit_config", type=Optional[str], default=None,
                        help="The task's fit config (data, model with its analog hardware, trainer, drift) every "
                             "row trains with (null: fit's defaults, digits).")
    parser.add_argument("--fit_args", type=list[str], default=[],
                        help="More fit options for every row, e.g. ['--model.init_args.lr', '0.1'] (fit's options "
                             "--data.*, --model.*, --trainer.*, --drift.* on this command line are added to them; "
                             "the budget's overrides come last).")
    parser.add_class_arguments(Sampling, "sampling")
    parser.add_class_arguments(Budget, "budget")
    parser.add_class_arguments(Replicates, "replicates")
    parser.add_class_arguments(Fidelity, "fidelity")
    parser.add_argument("--store", type=str, default="runs/campaign/rows.sqlite",
                        help="SQLite file of the rows (created, or continued when it exists).")
    parser.add_argument("--campaign_dir", type=Optional[str], default="runs/campaign",
                        help="TensorBoard logs, one folder per architecture (null: no logs).")
    parser.add_argument("--workers", type=Optional[int], default=None,
                        help="Worker processes (0: train in this process). Default: workers_per_gpu per GPU, else 1.")
    parser.add_argument("--workers_per_gpu", type=int, default=1,
                        help="Trainings packed on each GPU (a small network leaves a large GPU mostly idle): the local "
                             "executor runs GPUs x N workers, each pinned to one device, round robin (0, 1, 0, 1); "
                             "with --executor ray each task declares ray.num_gpus 1/N. Not with workers (give one "
                             "of them), ray.num_gpus or the CPU.")
    parser.add_argument("--accelerator", type=str, default="auto", help="cpu, gpu or auto (GPUs when present).")
    parser.add_argument("--threads_per_worker", type=Optional[int], default=None,
                        help="torch threads of each local worker (default: CPU cores / workers).")
    parser.add_argument("--executor", type=str, default="local",
                        help="local (worker processes on this machine) or ray (tasks on a Ray cluster).")
    parser.add_class_arguments(RayOptions, "ray")
    parser.add_argument("--export", type=Union[bool, str, None], default=True,
                        help="Also write all rows to this .csv or .parquet file at the end. true (default): beside "
                             "the store, as <store without its suffix>.csv; false or null: no export.")
    return parser


def load(argv: list[str]) -> tuple[Any, Campaign]:
    """The parsed options and the campaign of a build-dataset command line (``--config FILE ...``)."""
    argv, fit_options = take_fit_options(argv)  # --data.*, --model.*, ...: options of the fit config
    cfg = build_parser().parse_args(argv)
    campaign = Campaign.from_fit_config(cfg.fit_config, [*cfg.fit_args, *fit_options], Budget(**cfg.budget.as_dict()),
                                        Sampling(**cfg.sampling.as_dict()), cfg.campaign_dir,
                                        Replicates(**cfg.replicates.as_dict()), Fidelity(**cfg.fidelity.as_dict()))
    return cfg, campaign


def export_path(store: str, export: Union[bool, str, None]) -> Optional[str]:
    """Where the rows are exported: ``export`` itself, beside the store for ``true`` (``rows.sqlite`` ->
    ``rows.csv``: outputs go where the store goes), nowhere for ``false`` or ``null``."""
    if export is True:
        return str(Path(store).with_suffix(".csv"))
    return export or None


def main(argv: list[str]) -> None:
    cfg, campaign = load(argv)
    cfg.export = export_path(cfg.store, cfg.export)
    if cfg.export is not None and Path(cfg.export).resolve() == Path(cfg.store).resolve():
        raise UserError(f"export {cfg.export} is the store itself; give another file (.csv or .parquet)")
    refuse_installed_copy(cfg.store, "store", "--store")
    for option in ("export", "campaign_dir"):
        if getattr(cfg, option):
            refuse_installed_copy(getattr(cfg, option), option, f"--{option}")
    if cfg.workers is not None and cfg.workers < 0:
        raise UserError(f"workers must be >= 0, got {cfg.workers}")
    if cfg.executor not in ("local", "ray"):
        raise UserError(f"unknown executor {cfg.executor!r}; use local or ray")
    ray_opts = RayOptions(**cfg.ray.as_dict())
    if cfg.executor == "ray":  # the tasks' GPUs are the cluster's: ray.num_gpus, or 1/workers_per_gpu of one
        check_workers_per_gpu(cfg.workers_per_gpu)
        if cfg.workers_per_gpu > 1 and cfg.accelerator == "cpu":
            raise UserError(f"workers_per_gpu ({cfg.workers_per_gpu}) needs GPUs, and accelerator is cpu; "
                            "drop one of them")
        ray_opts = packed(ray_opts, cfg.workers_per_gpu)
    import torch

    gpus = torch.cuda.device_count() if cfg.accelerator in ("auto", "gpu") else 0
    if cfg.accelerator == "gpu" and gpus == 0:
        raise UserError("accelerator=gpu but no CUDA device is visible; use --accelerator cpu")
    if cfg.executor == "ray":
        workers = cfg.workers if cfg.workers is not None else (gpus or 1)
    else:
        workers = local_workers(cfg.workers, cfg.workers_per_gpu, gpus)
    fixed = campaign.threads
    if fixed and cfg.executor == "local" and cfg.threads_per_worker is not None and cfg.threads_per_worker != fixed:
        print(f"campaign: note: budget.threads ({fixed}) fixes every job's torch threads (the rows depend on "
              f"it); --threads_per_worker {cfg.threads_per_worker} is not used", file=sys.stderr)
    if fixed and cfg.executor == "ray" and fixed > ray_opts.num_cpus:
        raise UserError(f"budget.threads ({fixed}) is more than the CPUs each Ray task reserves (ray.num_cpus "
                        f"{cfg.ray.num_cpus:g}): tasks would oversubscribe their nodes; set ray.num_cpus to at least "
                        f"{fixed}")
    if cfg.executor == "ray":
        from lightning_nas.campaign.ray_executor import RayExecutor

        executor: Any = RayExecutor(ray_opts)
        where = f"Ray tasks ({ray_opts.num_cpus:g} CPU, {ray_opts.num_gpus:.4g} GPU each)"
    else:
        from lightning_nas.campaign.local_executor import LocalExecutor

        executor = LocalExecutor(workers, gpus)
        where = f"{workers or 'no'} worker process(es)"
        if workers and gpus:
            per_gpu = f", {cfg.workers_per_gpu} per GPU" if cfg.workers_per_gpu > 1 else ""
            where += f" on {min(workers, gpus)} GPU(s){per_gpu}"
    from tqdm import tqdm

    bar: Any = None
    seen: Counter[str] = Counter()  # statuses of the rows trained by this run

    def on_start(total: int, done: int, task: str, stage: str = "") -> None:
        nonlocal bar
        if bar is not None:  # the next rung, or the rows after the replicates (replicates.first)
            bar.close()
        at = f" at fidelity {stage}" if stage else ""
        print(f"campaign: {total} architectures of task {task}{at}, {done} already in {cfg.store}, "
              f"{total - done} to train with {where}", file=sys.stderr)
        bar = tqdm(total=total, initial=done, desc=f"rung {stage}" if stage else "architectures", unit="arch",
                   dynamic_ncols=True)

    def on_replicates(n: int) -> None:
        nonlocal bar
        bar.close()
        print(f"campaign: {n} replicates to train (other seeds, {campaign.replicates.n_reps} programmings)",
              file=sys.stderr)
        bar = tqdm(total=n, desc="replicates", unit="run", dynamic_ncols=True)

    def on_row(row: Row) -> None:
        from lightning_nas.training import few_steps

        warning = few_steps(row.steps, row.epochs) if not seen["few_steps"] else None
        if warning:  # once a run, from the first row that trained (the budget is the same for all)
            seen["few_steps"] += 1
            tqdm.write(f"warning: {warning}", file=sys.stderr)
        seen[row.status] += 1
        bar.set_postfix(diverged=seen["diverged"], failed=seen["failed"], last=f"{row.arch_id} {row.status}")
        bar.update(1)

    with RowStore(cfg.store) as store:
        store.lock()
        try:
            run_campaign(campaign, store, executor, threads=threads_per_worker(workers, gpus, cfg.threads_per_worker),
                         accelerator="gpu" if gpus else "cpu", on_start=on_start, on_row=on_row,
                         on_replicates=on_replicates)
        finally:
            if bar is not None:
                bar.close()
        counts = {status: len(store.ids(statuses=(status,))) for status in ("ok", "diverged", "failed")}
        replicated = len(store.replicate_rows())
        print(f"done: {len(store)} rows in {cfg.store} ({counts['ok']} ok, {counts['diverged']} diverged: kept as "
              f"'did not learn', {counts['failed']} failed: trained again when the command is run again)"
              + (f", {replicated} ok replicates" if replicated else ""), file=sys.stderr)
        cheap = store.fidelity_rows()
        if cheap:
            per_rung = Counter(label(r["fidelity"]) for r in cheap)
            print(f"      {len(cheap)} rows of cheaper rungs ({', '.join(f'{n} {k}' for k, n in sorted(per_rung.items()))})",
                  file=sys.stderr)
        if cfg.export:
            print(f"exported {export(store.rows(), cfg.export)}", file=sys.stderr)
            if cheap:
                print(f"exported {export(cheap, fidelity_export(cfg.export))}", file=sys.stderr)


def fidelity_export(path: str) -> str:
    """Where the rows of cheaper rungs are exported beside ``path``: ``rows.csv`` -> ``rows.fidelities.csv``."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}.fidelities{p.suffix}"))

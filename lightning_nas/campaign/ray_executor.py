"""Run campaign jobs as Ray tasks (``--executor ray``); rows stream back to the driver.

Each architecture is one task with the declared resources (``num_cpus``, ``num_gpus``).
Ray re-runs a task whose worker process died (``max_retries``); a task that still
fails becomes a ``failed`` row. The store stays on the driver, so a Ray campaign is
resumed exactly like a local one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from lightning_nas.campaign.executor import Job, Row, TrainFn
from lightning_nas.errors import UserError


@dataclass
class RayOptions:
    address: Optional[str] = None
    """``auto``, ``ray://host:port`` or ``None`` to start a local Ray instance."""
    num_cpus: float = 1.0
    """CPUs declared per task (also its torch thread count)."""
    num_gpus: float = 0.0
    """GPUs declared per task (``> 0`` trains on the GPU Ray assigns)."""
    local_cpus: Optional[int] = None
    """CPUs of a local instance (``None``: all of this machine's)."""
    max_retries: int = 2
    """Re-runs of a task whose worker died (killed, out of memory, node lost)."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("executor ray needs Ray: pip install -e '.[ray]' (or pip install ray)") from None
    return ray


def run_tasks(fn: Callable[[Any], Any], items: list[Any], on_result: Callable[[Any, Any], None],
              opts: RayOptions, on_failure: Callable[[Any, str], Any]) -> None:
    """Run ``fn(item)`` as one Ray task per item; ``on_result(item, result)`` as each finishes
    (``on_failure(item, message)`` gives the result of a task whose retries are used up)."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=opts.address, num_cpus=opts.local_cpus if opts.address is None else None,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise UserError(f"can't connect to Ray at {opts.address!r} ({err}); start a cluster "
                            "(ray start --head) or leave ray.address unset for a local instance") from None
        started = True
    try:
        task = ray.remote(num_cpus=opts.num_cpus, num_gpus=opts.num_gpus, max_retries=opts.max_retries)(fn)
        pending = {task.remote(item): item for item in items}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                item = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:  # retries used up: record, go on
                    result = on_failure(item, f"ray task failed: {type(err).__name__}: {str(err)[:300]}")
                on_result(item, result)
    finally:
        if started:
            ray.shutdown()


class RayExecutor:
    """Campaign jobs as Ray tasks: each trains with ``num_cpus`` threads (or on its GPU)."""

    def __init__(self, opts: RayOptions, train: Optional[TrainFn] = None) -> None:
        self.opts = opts
        self.train = train

    def run(self, jobs: list[Job], on_row: Callable[[Row], None]) -> None:
        from lightning_nas.campaign.train import failed_row, train_architecture

        placed = [job.placed(max(1, int(self.opts.num_cpus)), "gpu" if self.opts.num_gpus > 0 else "cpu")
                  for job in jobs]
        run_tasks(self.train or train_architecture, placed, lambda job, row: on_row(row), self.opts, failed_row)

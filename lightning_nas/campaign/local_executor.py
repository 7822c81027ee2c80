"""Campaign jobs in worker processes on this machine (``--executor local``)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Callable, Iterator, Optional

from lightning_nas.campaign.executor import Job, Row, TrainFn
from lightning_nas.campaign.train import failed_row


class LocalExecutor:
    """Run jobs in ``workers`` spawned processes (``0``: in this process); with ``gpus`` each worker
    is pinned to one device, round robin (:func:`gpu_of_worker`; ``gpus x workers_per_gpu`` workers
    put ``workers_per_gpu`` on each).

    A worker process that dies breaks the whole pool, so the jobs it held can't tell who
    crashed. They are re-run one at a time, each alone in a fresh one-worker pool: a job
    that crashes alone twice is recorded as failed; the others train normally.

    When the run stops early (an exception, Ctrl-C, SIGTERM turned into ``KeyboardInterrupt`` by
    the CLI) the workers are terminated at once, not waited for; a worker whose parent dies
    (``kill -9``) gets SIGTERM from the kernel (Linux), so no worker outlives its campaign.
    """

    def __init__(self, workers: int, gpus: int = 0, train: Optional[TrainFn] = None) -> None:
        self.workers = workers
        self.gpus = gpus
        self.train = train

    def run(self, jobs: list[Job], on_row: Callable[[Row], None]) -> None:
        from lightning_nas.campaign.train import train_architecture

        train = self.train or train_architecture
        if self.workers == 0:
            for job in jobs:
                on_row(train(job))
            return
        pending, suspects = list(jobs), []
        crashes: dict[str, int] = {}
        while pending or suspects:
            if suspects:
                job = suspects.pop(0)
                with self._pool(1) as pool, _terminate_on_error(pool):
                    try:
                        on_row(pool.submit(train, job).result())
                    except BrokenProcessPool:
                        key = job.arch_id
                        crashes[key] = crashes.get(key, 0) + 1
                        if crashes[key] >= 2:
                            on_row(failed_row(job, "its worker process died (killed or crashed) twice"))
                        else:
                            suspects.append(job)
                continue
            with self._pool(self.workers) as pool, _terminate_on_error(pool):
                running: dict[Future, Job] = {}
                broken = False
                while (pending or running) and not broken:
                    while pending and len(running) < 2 * self.workers:
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

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        """Spawned workers; with GPUs each worker takes one device for all its jobs (:func:`gpu_of_worker`)."""
        ctx = get_context("spawn")
        counter = ctx.Value("i", 0)
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_start_worker,
                                   initargs=(counter, self.gpus))


STOP_GRACE_S = 1.0
"""How long stopped workers get to exit after SIGTERM before they are killed: a campaign stops
within about a second of Ctrl-C or SIGTERM (Lightning's own SIGTERM handler in a worker would
otherwise let it train to the end of its epoch). Their unfinished rows are trained again next time."""


@contextlib.contextmanager
def _terminate_on_error(pool: ProcessPoolExecutor) -> Iterator[None]:
    """On any exception (``KeyboardInterrupt`` included) stop the pool's workers now: leaving the
    ``with pool`` block would otherwise wait for every running job to finish."""
    try:
        yield
    except BaseException:
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S  # a worker in a Lightning loop defers SIGTERM to its epoch's end
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        raise


def _start_worker(counter: Any, gpus: int) -> None:
    """Worker start: die with the parent (Linux), ignore Ctrl-C (the parent stops the workers),
    and with GPUs take one device for all of this worker's jobs."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpus:
        _claim_gpu(counter, gpus)


def _claim_gpu(counter: Any, gpus: int) -> None:
    """This worker's device (:func:`gpu_of_worker`, by start order), its only visible one from now on."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_of_worker(index, gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))


def gpu_of_worker(index: int, gpus: int, visible: Optional[str] = None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of the ``index``-th worker (0, 1, ... in start order) of a pool on
    ``gpus`` devices: round robin, so four workers on two GPUs take 0, 1, 0, 1. A full pool of
    ``gpus x workers_per_gpu`` workers gives each device exactly ``workers_per_gpu`` of them, and a
    pool that starts fewer workers (fewer jobs than workers) still spreads them over the devices
    instead of stacking them on the first. ``visible`` is the campaign's own ``CUDA_VISIBLE_DEVICES``
    (a scheduler's slice, such as ``2,3`` or GPU UUIDs): the workers share out those devices, not the
    machine's first ones."""
    device = index % gpus
    entries = [entry.strip() for entry in (visible or "").split(",") if entry.strip()]
    return entries[device] if len(entries) >= gpus else str(device)

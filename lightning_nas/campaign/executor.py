"""How a campaign's jobs get run: one interface, two executors.

An executor takes the jobs (one per architecture: a :class:`~lightning_nas.campaign.train.Job` for
:func:`~lightning_nas.campaign.train.train_architecture`) and hands every finished row to
``on_row`` as it arrives, in any order; a job that could not finish becomes a ``failed`` row.

* :class:`~lightning_nas.campaign.local_executor.LocalExecutor`: worker processes on this machine;
* :class:`~lightning_nas.campaign.ray_executor.RayExecutor`: one Ray task per job on a cluster.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from lightning_nas.campaign.train import Job, Row
TrainFn = Callable[[Job], Row]


class Executor(Protocol):
    def run(self, jobs: list[Job], on_row: Callable[[Row], None]) -> None:
        """Run every job; call ``on_row(row)`` for each as it finishes."""

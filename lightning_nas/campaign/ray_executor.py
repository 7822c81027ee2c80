"""Run campaign jobs as Ray tasks (``--executor ray``); rows stream back to the driver.

Each architecture is one task with the declared resources (``num_cpus``, ``num_gpus``).
Ray re-runs a task whose worker process died (``max_retries``); a task that still
fails becomes a ``failed`` row. The store stays on the driver, so a Ray campaign is
resumed exactly like a local one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from lightning_nas.campaign.executor import Job, Row, TrainFn
from lightning_nas.errors import UserError


@dataclass
class RayOptions:
    address: Optional[str] = None
    """``HOST:PORT`` of a cluster's head (``ray start --head``), ``auto``, ``ray://host:port``, or
    ``None`` to start a local Ray instance. A token cluster's token is read from ``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    num_cpus: float = 1.0
    """CPUs declared per task (also its torch thread count)."""
    num_gpus: float = 0.0
    """GPUs declared per task (``> 0`` trains on the GPU Ray assigns; a fraction such as 0.25 packs
    four small trainings on one GPU, what ``build-dataset --workers_per_gpu 4`` sets)."""
    local_cpus: Optional[int] = None
    """CPUs of a local instance (``None``: all of this machine's)."""
    max_retries: int = 2
    """Re-runs of a task whose worker died (killed, out of memory, node lost)."""


def packed(opts: RayOptions, workers_per_gpu: int) -> RayOptions:
    """``opts`` for a campaign with ``workers_per_gpu`` trainings on each GPU: each task declares
    ``num_gpus = 1 / workers_per_gpu`` (Ray's fractional GPUs). The count is said once: either
    ``workers_per_gpu`` or ``ray.num_gpus``, so ``workers_per_gpu`` > 1 with a ``ray.num_gpus`` of
    its own is refused."""
    from dataclasses import replace

    if workers_per_gpu == 1:
        return opts
    if opts.num_gpus:
        raise UserError(f"workers_per_gpu ({workers_per_gpu}) and ray.num_gpus ({opts.num_gpus:g}) both set the GPU "
                        f"share of each Ray task: give one of them (workers_per_gpu {workers_per_gpu} is ray.num_gpus "
                        f"{1 / workers_per_gpu:.4g})")
    return replace(opts, num_gpus=1 / workers_per_gpu)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("executor ray needs Ray: pip install -e '.[ray]' (or pip install ray)") from None
    return ray


TOKEN_SOURCES = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")
"""Where Ray looks for a cluster's authentication token, in its order."""


def token_source() -> Optional[str]:
    """Where this driver's Ray token comes from (:data:`TOKEN_SOURCES`), or None without one."""
    import os
    from pathlib import Path

    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH ({path})" if Path(path).expanduser().is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def use_cluster_token() -> Optional[str]:
    """Before connecting to an existing cluster: with ``RAY_AUTH_MODE`` unset and a token at hand,
    connect with it (token mode), as ``ray start`` does on the head: Ray turns token authentication
    on by default where a token exists, but a driver connecting with ``ray.init(address=...)`` does
    not, and the cluster then refuses it. Returns where the token came from (None: no token)."""
    import os

    source = token_source()
    if source is not None and os.environ.get("RAY_AUTH_MODE") is None:
        os.environ["RAY_AUTH_MODE"] = "token"  # read by Ray's config when it initialises
        try:
            from ray._raylet import Config

            Config.initialize("")  # a config Ray loaded already observes the mode too
        except Exception:  # noqa: BLE001 - older or newer Ray: the variable alone is what it documents
            pass
    return source


def reachable(address: str, timeout: float = 3.0) -> Optional[bool]:
    """Whether something listens at ``host:port`` (None for addresses it can't tell: ``auto``, ``ray://``)."""
    import socket

    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


class _Captured:
    def __init__(self, path: str) -> None:
        self.path, self.failed = path, False

    def text(self) -> str:
        with open(self.path, errors="replace") as f:
            return f.read()


@contextlib.contextmanager
def captured_stderr() -> Iterator[_Captured]:
    """File descriptor 2 (where Ray's C++ core logs) into a file while the context runs; replayed
    to stderr afterwards unless the context marked it ``failed`` (then the one-line error says it)."""
    import os
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        sys.stderr.flush()
        saved = os.dup(2)
        captured = _Captured(log.name)
        try:
            os.dup2(log.fileno(), 2)
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not captured.failed:
                sys.stderr.write(captured.text())


def connection_error(address: Optional[str], err: Exception, token: Optional[str], said: str = "") -> UserError:
    """One line: no cluster at the address, or a cluster that refused this driver (authentication:
    Ray's core said ``InvalidAuthToken`` / ``Unauthenticated``), or another failure with Ray's words."""
    import os

    if "InvalidAuthToken" in said or "Unauthenticated" in said:
        mode = os.environ.get("RAY_AUTH_MODE")
        had = f"this driver sent the token from {token}" if token else "this driver has no token"
        return UserError(
            f"the Ray cluster at {address!r} refused this driver: its authentication token is missing or incorrect "
            f"({had}; RAY_AUTH_MODE {mode or 'unset'}). Give the driver the cluster's token (RAY_AUTH_TOKEN=<token> or "
            "RAY_AUTH_TOKEN_PATH=<file>, from 'ray get-auth-token' on the head node; ~/.ray/auth_token is read when "
            "neither is set), or run the cluster with RAY_AUTH_MODE=disabled")
    if address is not None and reachable(address) is False:
        return UserError(f"no Ray cluster at {address!r} (nothing listens there); start one with "
                         f"ray start --head --port {address.rpartition(':')[2]}, or leave ray.address unset "
                         "for a local instance")
    return UserError(f"can't connect to Ray at {address!r} ({err}); start a cluster "
                     "(ray start --head) or leave ray.address unset for a local instance")


def run_tasks(fn: Callable[[Any], Any], items: list[Any], on_result: Callable[[Any, Any], None],
              opts: RayOptions, on_failure: Callable[[Any, str], Any]) -> None:
    """Run ``fn(item)`` as one Ray task per item; ``on_result(item, result)`` as each finishes
    (``on_failure(item, message)`` gives the result of a task whose retries are used up)."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        token = None
        if opts.address is not None:
            if reachable(opts.address) is False:  # Ray would retry for minutes: say it now
                raise connection_error(opts.address, ConnectionError("nothing listens"), None)
            token = use_cluster_token()
        with captured_stderr() as said:  # Ray's core logs a refused token on fd 2, once a second
            try:
                ray.init(address=opts.address, num_cpus=opts.local_cpus if opts.address is None else None,
                         include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as err:
                said.failed = True
                raise connection_error(opts.address, err, token, said.text()) from None
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

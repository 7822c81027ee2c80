"""Campaign throughput: Ray workers on a CPU, or several campaign workers per GPU.

Without ``--workers-per-gpu``: the same small digits campaign twice on a local Ray instance (a
fresh store each time), with one Ray worker CPU and with two; prints architectures per minute and
the scaling efficiency = (throughput with 2) / (2 x throughput with 1)::

    .venv/bin/python benchmarks/campaign_throughput.py --n 8

With ``--workers-per-gpu 1 2 4``: the CIFAR-10 campaign recipe (``configs/cifar10/campaign.yaml``
with its fit config) on synthetic data in the official format (``tests/formats.py``
``write_cifar10``), ``build-dataset`` with the local executor once per value (a fresh store each
time, the same architectures in the same order), each run stopped after ``--seconds`` (SIGTERM,
as a scheduler would) or when its ``--n`` architectures are done; prints architectures per hour
and the GPUs' use per setting::

    python benchmarks/campaign_throughput.py --workers-per-gpu 1 2 4 --seconds 50 \\
        --per-class 1000 --epochs 2 --n-reps 3 --drift-samples 1000                        # about 3 min
    .venv/bin/python benchmarks/campaign_throughput.py --workers-per-gpu 1 --accelerator cpu \\
        --per-class 20 --epochs 1 --n-reps 1 --drift-samples 40 --n 2 --seconds 200 --threads-per-worker 1

On a CPU (``--accelerator cpu``) each value is a number of CPU worker processes instead
(``--workers``; the cores are shared out among them). The columns:

* ``arch/h``: stored architectures / seconds since the command started, start-up included
  (interpreters, imports, CUDA contexts, the periphery's compilation; a long campaign pays it once);
* ``steady arch/h``: ``workers x 3600 / s/arch``, the rate once every worker is busy; ``s/arch`` is
  the median time one worker spends on one architecture (``wall_s`` of the rows, leaving out the
  first ``workers`` rows to arrive, which carry each worker's start-up; ``*``: too few rows, all
  counted); it grows when workers contend for the device;
* ``threads``: torch CPU threads of each worker (the rows' ``threads``: the machine's cores shared
  out among the workers);
* ``speed-up``: ``steady arch/h`` against the first setting;
* ``GPU %`` and ``GPU MiB``: ``nvidia-smi`` sampled every half second after the first row, the mean
  utilisation and the peak memory in use (summed over the GPUs).

The recipe's budget can be scaled down (``--epochs``, ``--n-reps``, ``--drift-samples``: overrides
of the campaign's ``budget``); the synthetic data set is ``--per-class`` training images per class
(the campaign trains on a seeded half of the 90 % not held out for validation) and a fifth as many
test images. Every setting sees the same data, budget and architectures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "cifar10" / "campaign.yaml"


def campaign(n: int, workers: int, epochs: int, store: Path) -> float:
    from lightning_nas.commands import build_dataset

    start = time.perf_counter()
    build_dataset.main([
        "--data.class_path", "lightning_nas.data.DigitsDataModule", "--sampling.n", str(n),
        "--sampling.max_params", "50000", "--sampling.method", "uniform", "--store", str(store),
        "--campaign_dir", "null", "--budget.epochs", str(epochs), "--budget.n_reps", "2",
        "--executor", "ray", "--ray.local_cpus", str(workers), "--ray.num_cpus", "1"])
    return time.perf_counter() - start


def ray_scaling(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t1 = campaign(args.n, 1, args.epochs, Path(tmp) / "one.sqlite")
        t2 = campaign(args.n, 2, args.epochs, Path(tmp) / "two.sqlite")
    r1, r2 = args.n / t1 * 60, args.n / t2 * 60
    print(f"{args.n} architectures, {args.epochs} epochs each, Ray local instance")
    print(f"1 worker : {t1:6.1f} s  {r1:6.1f} arch/min")
    print(f"2 workers: {t2:6.1f} s  {r2:6.1f} arch/min")
    print(f"speed-up {t1 / t2:.2f}x, scaling efficiency {r2 / (2 * r1):.0%}")


# -- several workers per GPU: the CIFAR-10 recipe ----------------------------------------------

class GpuSampler:
    """``nvidia-smi`` every ``every`` seconds in a thread: (time, utilisation % per GPU, MiB per GPU)."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.samples: list[tuple[float, list[float], list[float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "GpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10).stdout
                gpus = [[float(v) for v in line.split(",")] for line in out.strip().splitlines()]
            except (OSError, ValueError, subprocess.TimeoutExpired):
                continue
            self.samples.append((time.monotonic(), [u for u, _ in gpus], [m for _, m in gpus]))

    def summary(self, since: float) -> tuple[Optional[float], Optional[float]]:
        """Mean utilisation (%, over the GPUs) and peak memory in use (MiB, summed) from ``since`` on."""
        later = [s for s in self.samples if s[0] >= since]
        if not later:
            return None, None
        return (statistics.mean(statistics.mean(u) for _, u, _ in later), max(sum(m) for _, _, m in later))


def stored_ids(store: Path) -> set[str]:
    """The architectures stored so far (the campaign writes in WAL mode: reading does not block it)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)) as conn:
            return {r[0] for r in conn.execute("SELECT arch_id FROM rows")}
    except sqlite3.Error:  # not created yet
        return set()


def stored_rows(store: Path) -> list[dict[str, Any]]:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)) as conn:
            return [json.loads(r[0]) for r in conn.execute("SELECT row FROM rows ORDER BY rowid")]
    except sqlite3.Error:
        return []


def write_data(root: Path, per_class: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import formats

    formats.write_cifar10(root, per_class=per_class, test_per_class=max(1, per_class // 5))


def run_setting(value: int, args: argparse.Namespace, data: Path, tmp: Path) -> dict[str, Any]:
    """One build-dataset run of the recipe with ``value`` workers per GPU (CPU workers on a CPU)."""
    gpu = args.accelerator == "gpu"
    store = tmp / f"per_device_{value}.sqlite"
    cmd = [sys.executable, "-m", "lightning_nas", "build-dataset", "--config", str(RECIPE),
           "--data.init_args.data_dir", str(data), "--sampling.n", str(args.n), "--store", str(store),
           "--campaign_dir", "null", "--export", "false", "--accelerator", args.accelerator,
           *(["--workers_per_gpu", str(value)] if gpu else ["--workers", str(value)])]
    for option, given in (("epochs", args.epochs), ("n_reps", args.n_reps), ("drift_samples", args.drift_samples)):
        if given is not None:
            cmd += [f"--budget.{option}", str(given)]
    if args.threads_per_worker:
        cmd += ["--threads_per_worker", str(args.threads_per_worker)]
    log_path = tmp / f"per_device_{value}.log"
    arrivals: dict[str, float] = {}
    sampler = GpuSampler() if gpu and shutil.which("nvidia-smi") else None
    with open(log_path, "w") as log, (sampler or contextlib.nullcontext()):
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        stopped = False
        while proc.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            for arch_id in stored_ids(store) - arrivals.keys():
                arrivals[arch_id] = now
            if now - start >= args.seconds:
                proc.send_signal(signal.SIGTERM)  # the CLI stops its workers within about a second
                stopped = True
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                break
        end = time.monotonic()
    rows = stored_rows(store)
    ok = [r for r in rows if r["status"] != "failed"]
    if not rows and proc.returncode not in (0, 143):
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise SystemExit(f"build-dataset failed (exit {proc.returncode}):\n" + "\n".join(tail))
    workers = value * (gpu_count() if gpu else 1)
    # Each worker's first architecture carries its start-up (CUDA context, the periphery's compilation):
    # s/arch leaves out the first `workers` rows to arrive when later ones exist.
    ok.sort(key=lambda r: arrivals.get(r["arch_id"], end))
    later = ok[workers:] or ok
    per_arch = statistics.median(r["wall_s"] for r in later) if later else None
    first = min(arrivals.values(), default=end)
    util, memory = sampler.summary(first) if sampler else (None, None)
    return {"value": value, "workers": workers, "rows": len(ok), "failed": len(rows) - len(ok),
            "wall_s": end - start, "stopped": stopped, "arch_h": len(ok) / (end - start) * 3600,
            "s_per_arch": per_arch, "steady_arch_h": workers * 3600 / per_arch if per_arch else None,
            "gpu_util": util, "gpu_mib": memory, "steps": ok[0].get("steps") if ok else None,
            "threads": ok[0].get("threads") if ok else None, "warm": len(later) < len(ok) or not ok,
            "failures": sorted({r.get("message", "")[:120] for r in rows if r["status"] == "failed"})}


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def workers_per_gpu(args: argparse.Namespace) -> None:
    import torch

    gpu = args.accelerator == "gpu"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--accelerator gpu but no CUDA device is visible; use --accelerator cpu")
    device = (", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if gpu
              else f"CPU ({__import__('os').cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cifar10"
        write_data(data, args.per_class)
        results = []
        for value in args.workers_per_gpu:
            print(f"... {value} {'per GPU' if gpu else 'CPU workers'}", file=sys.stderr, flush=True)
            results.append(run_setting(value, args, data, Path(tmp)))
    budget = {k: v for k, v in (("epochs", args.epochs), ("n_reps", args.n_reps), ("drift_samples", args.drift_samples))
              if v is not None}
    print(f"CIFAR-10 campaign recipe ({RECIPE.relative_to(ROOT)}, budget overrides {budget or 'none'}), synthetic data "
          f"{args.per_class} train / {max(1, args.per_class // 5)} test images per class; up to {args.n} architectures "
          f"and {args.seconds:g} s per setting")
    print(f"device {device}, torch {torch.__version__}; optimizer steps per architecture "
          f"{next((r['steps'] for r in results if r['steps']), '-')}")
    per = "per GPU" if gpu else "CPU workers"
    header = (f"{per:>11}  {'workers':>7}  {'threads':>7}  {'rows':>4}  {'failed':>6}  {'wall s':>6}  {'arch/h':>7}  "
              f"{'s/arch':>6}  {'steady arch/h':>13}  {'speed-up':>8}  {'GPU %':>5}  {'GPU MiB':>7}")
    print(header)
    print("-" * len(header))
    base = results[0]["steady_arch_h"]
    for r in results:
        speed = r["steady_arch_h"] / base if base and r["steady_arch_h"] else None
        print(f"{r['value']:>11}  {r['workers']:>7}  {r['threads'] or '-':>7}  {r['rows']:>4}  {r['failed']:>6}  "
              f"{r['wall_s']:>6.0f}  "
              f"{r['arch_h']:>7.0f}  {fmt(r['s_per_arch'], '5.1f') + ('' if r['warm'] else '*'):>6}  {fmt(r['steady_arch_h'], '13.0f'):>13}  "
              f"{fmt(speed, '7.2f') + 'x' if speed else '-':>8}  {fmt(r['gpu_util'], '5.0f'):>5}  "
              f"{fmt(r['gpu_mib'], '7.0f'):>7}")
    if any(r["rows"] and not r["warm"] for r in results):
        print("* s/arch of every row, first ones included (no row after each worker's first): a longer --seconds "
              "leaves the start-up out")
    stopped = [str(r["value"]) for r in results if r["stopped"]]
    if stopped:
        print(f"stopped at the time limit (SIGTERM; rows finished before it are counted): {', '.join(stopped)} {per}")
    for r in results:
        for message in r["failures"]:
            print(f"failed rows with {r['value']} {per}: {message}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=None,
                   help="architectures per campaign (default: 8 on Ray; 64 with --workers-per-gpu)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per architecture (default: 2 on Ray; the recipe's 10 with --workers-per-gpu)")
    p.add_argument("--workers-per-gpu", type=int, nargs="+", default=None,
                   help="measure the CIFAR-10 recipe with each of these workers per GPU (1 2 4)")
    p.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu",
                   help="with --workers-per-gpu: gpu, or cpu (each value is then a number of CPU workers)")
    p.add_argument("--seconds", type=float, default=55.0, help="with --workers-per-gpu: time limit of each setting")
    p.add_argument("--per-class", type=int, default=200,
                   help="with --workers-per-gpu: synthetic training images per class (a fifth as many test images)")
    p.add_argument("--n-reps", type=int, default=None, help="with --workers-per-gpu: budget.n_reps (recipe: 10)")
    p.add_argument("--threads-per-worker", type=int, default=None,
                   help="with --workers-per-gpu: torch threads of each worker (default: the cores shared out)")
    p.add_argument("--drift-samples", type=int, default=None,
                   help="with --workers-per-gpu: budget.drift_samples (recipe: 2000; the synthetic test set is smaller)")
    args = p.parse_args()
    if args.workers_per_gpu:
        if min(args.workers_per_gpu) < 1:
            p.error("--workers-per-gpu values are >= 1")
        args.n = args.n or 64
        workers_per_gpu(args)
    else:
        args.n, args.epochs = args.n or 8, args.epochs or 2
        ray_scaling(args)


if __name__ == "__main__":
    main()

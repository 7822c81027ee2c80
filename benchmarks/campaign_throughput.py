"""Campaign throughput on a local Ray instance with 1 and 2 workers (CPUs).

Runs the same small digits campaign twice (a fresh store each time), once with one
Ray worker CPU and once with two, and prints architectures per minute and the scaling
efficiency = (throughput with 2) / (2 x throughput with 1)::

    .venv/bin/python benchmarks/campaign_throughput.py --n 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lightning_nas.commands import build_dataset


def campaign(n: int, workers: int, epochs: int, store: Path) -> float:
    start = time.perf_counter()
    build_dataset.main([
        "--data.class_path", "lightning_nas.data.DigitsDataModule", "--sampling.n", str(n),
        "--sampling.max_params", "50000", "--sampling.method", "uniform", "--store", str(store),
        "--campaign_dir", "null", "--budget.epochs", str(epochs), "--budget.n_reps", "2",
        "--executor", "ray", "--ray.local_cpus", str(workers), "--ray.num_cpus", "1"])
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=8, help="architectures per campaign")
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t1 = campaign(args.n, 1, args.epochs, Path(tmp) / "one.sqlite")
        t2 = campaign(args.n, 2, args.epochs, Path(tmp) / "two.sqlite")
    r1, r2 = args.n / t1 * 60, args.n / t2 * 60
    print(f"{args.n} architectures, {args.epochs} epochs each, Ray local instance")
    print(f"1 worker : {t1:6.1f} s  {r1:6.1f} arch/min")
    print(f"2 workers: {t2:6.1f} s  {r2:6.1f} arch/min")
    print(f"speed-up {t1 / t2:.2f}x, scaling efficiency {r2 / (2 * r1):.0%}")


if __name__ == "__main__":
    main()

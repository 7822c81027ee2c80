"""Accuracy parity of the fast analog path with aihwkit's reference path.

Trains the same architecture on digits with both ``analog.implementation`` values for
several seeds and prints the drift metrics (mean and std over seeds)::

    .venv/bin/python benchmarks/fast_path_parity.py --seeds 0 1 2 --epochs 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L

from lightning_nas.callbacks import DriftEvaluation
from lightning_nas.analog import AnalogConfig
from lightning_nas.data import DigitsDataModule
from lightning_nas.module import AnalogNASModule

METRICS = ("analog/acc_1s", "analog/acc_1d", "analog/acc_30d", "analog/acc_1d_std", "analog/avm")


def train(implementation: str, seed: int, arch: str, epochs: int, n_reps: int) -> tuple[dict, float]:
    L.seed_everything(seed, verbose=False)
    dm = DigitsDataModule(batch_size=64, seed=seed)
    model = AnalogNASModule(arch, analog=AnalogConfig(implementation=implementation),
                            input_shape=dm.input_shape, num_classes=dm.num_classes)
    drift = DriftEvaluation(n_reps=n_reps, seed=seed, verbose=False)
    trainer = L.Trainer(max_epochs=epochs, callbacks=[drift], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - start
    trainer.test(model, datamodule=dm, verbose=False)
    return drift.metrics, fit_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-reps", type=int, default=5)
    args = p.parse_args()
    print(f"digits, {args.arch}, {args.epochs} epochs, seeds {args.seeds}, {args.n_reps} programmings "
          "(accuracy in %, mean +- std over seeds)")
    print(f"{'implementation':<15}{'fit s':>8}" + "".join(f"{m.split('/')[1]:>16}" for m in METRICS))
    for implementation in ("aihwkit", "fast"):
        runs = [train(implementation, s, args.arch, args.epochs, args.n_reps) for s in args.seeds]
        fit = statistics.fmean(t for _, t in runs)
        cells = []
        for m in METRICS:
            values = [r[m] for r, _ in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):8.2f} +- {sd:4.2f}")
        print(f"{implementation:<15}{fit:8.1f}" + "".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()

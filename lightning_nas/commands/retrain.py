"""``python -m lightning_nas retrain --config configs/retrain_digits.yaml``.

Trains the search winners (and a baseline network) with the task's full budget, the
same way ``fit`` does (the task's fit config: data, model, trainer, drift), evaluates
drift and writes a comparison table as ``comparison.csv`` and ``comparison.md``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, Optional

from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.campaign.ray_executor import RayOptions
from lightning_nas.errors import UserError
from lightning_nas.space import PRESETS, load_architecture

COLUMNS = ("name", "arch_id", "n_params", "acc_1s", "acc_1h", "acc_1d", "acc_30d", "acc_1d_std", "avm")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m lightning_nas retrain", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--fit_config", type=str, default="configs/digits.yaml",
                        help="The task's fit config (data, model, trainer, drift).")
    parser.add_argument("--winners", type=str, default="runs/search/winners",
                        help="Folder of winner_<k>.yaml files written by search, or one architecture file.")
    parser.add_argument("--top_k", type=int, default=1)
    parser.add_argument("--baseline", type=Optional[str], default="resnet32",
                        help="A preset trained for comparison (null: none).")
    parser.add_argument("--out_dir", type=str, default="runs/retrain")
    parser.add_argument("--fit_args", type=list[str], default=[],
                        help="Extra fit arguments for every run, e.g. ['--trainer.max_epochs', '20'].")
    parser.add_argument("--executor", type=str, default="local",
                        help="local (one run after the other) or ray (one Ray task per run).")
    parser.add_dataclass_arguments(RayOptions, "ray")
    return parser


def winner_files(path: str, top_k: int) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    numbered = [f for f in p.glob("winner_*.yaml") if f.stem.split("_")[-1].isdigit()] if p.is_dir() else []
    files = sorted(numbered, key=lambda f: int(f.stem.split("_")[-1]))
    if not files:
        raise UserError(f"no winner_<k>.yaml in {p}; run search first or point --winners at its winners/ folder")
    return files[:top_k]


def train_one(name: str, arch_spec: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from callbacks import DriftEvaluation
    from lightning_nas.cli import AnalogNASCLI

    args = ["fit", "--config", cfg["fit_config"], "--model.init_args.architecture", arch_spec,
            "--trainer.logger.init_args.save_dir", str(Path(cfg["out_dir"]) / "runs"),
            "--trainer.logger.init_args.name", name, "--test_after_fit", "true", *cfg["fit_args"]]
    argv, sys.argv = sys.argv, sys.argv[:1]  # the CLI reads these args, not this process's command line
    try:
        cli = AnalogNASCLI(args=args)
    finally:
        sys.argv = argv
    drift = next(cb for cb in cli.trainer.callbacks if isinstance(cb, DriftEvaluation))
    row = {"name": name, "arch_id": cli.model.arch.id, "n_params": cli.model.n_params}
    row.update({k.split("/", 1)[1]: v for k, v in drift.metrics.items()})
    return row


def _train_run(item: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(item[2]["threads"])  # a Ray task uses the CPUs it declared
    return train_one(*item)


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = ""
    for r in rows:
        values = [r.get(c, "") for c in COLUMNS]  # drift times outside the defaults: empty cells
        cells = [f"{v:.2f}" if isinstance(v, float) else (f"{v:,}" if c == "n_params" and v != "" else str(v))
                 for c, v in zip(COLUMNS, values)]
        body += "| " + " | ".join(cells) + " |\n"
    return head + body


def main(argv: list[str]) -> None:
    cfg = build_parser().parse_args(argv)
    if not Path(cfg.fit_config).is_file():
        raise UserError(f"fit config {cfg.fit_config} does not exist; give the task's config with --fit_config")
    runs = [(f"winner_{k}", str(f)) for k, f in enumerate(winner_files(cfg.winners, cfg.top_k), 1)]
    for _, spec in runs:
        load_architecture(spec)  # fail early on a bad file
    if cfg.baseline:
        if cfg.baseline not in PRESETS:
            raise UserError(f"unknown baseline {cfg.baseline!r}; use one of {', '.join(PRESETS)} or null")
        runs.append((f"baseline_{cfg.baseline}", cfg.baseline))
    out = Path(cfg.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Absolute paths: Ray workers may run elsewhere.
    settings = {"fit_config": str(Path(cfg.fit_config).resolve()), "out_dir": str(out), "fit_args": cfg.fit_args}
    runs = [(name, spec if spec in PRESETS else str(Path(spec).resolve())) for name, spec in runs]
    results: dict[str, dict[str, Any]] = {}

    def record(run: tuple[str, str], row: dict[str, Any]) -> None:
        results[run[0]] = row
        done = [results[name] for name, _ in runs if name in results]  # in the order of the runs
        with (out / "comparison.csv").open("w", newline="") as f:  # rewritten after every run
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(done)
        (out / "comparison.md").write_text(markdown(done))

    if cfg.executor == "ray":
        from lightning_nas.campaign.ray_executor import run_tasks

        def failed(run: tuple[str, str], message: str) -> dict[str, Any]:
            raise UserError(f"retrain of {run[0]} failed on Ray: {message}")

        threads = {**settings, "threads": max(1, int(cfg.ray.num_cpus))}
        run_tasks(_train_run, [(name, spec, threads) for name, spec in runs],
                  lambda item, row: record(item[:2], row), RayOptions(**cfg.ray.as_dict()), failed)
    elif cfg.executor == "local":
        for name, spec in runs:
            print(f"retrain: {name} ({spec})", file=sys.stderr)
            record((name, spec), train_one(name, spec, settings))
    else:
        raise UserError(f"unknown executor {cfg.executor!r}; use local or ray")
    rows = [results[name] for name, _ in runs]
    print("\n" + markdown(rows))
    print(f"wrote {out}/comparison.csv and comparison.md", file=sys.stderr)

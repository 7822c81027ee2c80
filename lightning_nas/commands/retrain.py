"""``python -m lightning_nas retrain --config configs/digits/retrain.yaml``.

Trains the search winners (and a baseline network) with the task's full budget, the
same way ``fit`` does (the task's fit config: data, model, trainer, drift), evaluates
drift and writes a comparison table as ``comparison.csv`` and ``comparison.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from jsonargparse import ActionConfigFile

from lightning_nas.campaign.ray_executor import RayOptions
from lightning_nas.comparison import markdown, write_comparison
from lightning_nas.checkout import refuse_installed_copy
from lightning_nas.errors import UserError
from lightning_nas.files import check_writable
from lightning_nas.parsing import CommandParser, take_fit_options
from lightning_nas.space import PRESETS, load_architecture
from lightning_nas.task import TaskInfo


def build_parser() -> CommandParser:
    parser = CommandParser(command="retrain", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--fit_config", type=str, default="configs/digits/fit.yaml",
                        help="The task's fit config (data, model, trainer, drift).")
    parser.add_argument("--winners", type=str, default="runs/search/winners",
                        help="Folder of winner_<k>.yaml files written by search, or one architecture file.")
    parser.add_argument("--top_k", type=int, default=1)
    parser.add_argument("--baseline", type=Optional[str], default="resnet32",
                        help="A preset trained for comparison (null: none).")
    parser.add_argument("--out_dir", type=str, default="runs/retrain")
    parser.add_argument("--fit_args", type=list[str], default=[],
                        help="Extra fit arguments for every run, e.g. ['--trainer.max_epochs', '20'] (fit's options "
                             "--data.*, --model.*, --trainer.*, --drift.* on this command line are added to them).")
    parser.add_argument("--executor", type=str, default="local",
                        help="local (one run after the other) or ray (one Ray task per run).")
    parser.add_class_arguments(RayOptions, "ray")
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


def config_task(config: dict[str, Any]) -> TaskInfo:
    """The task a resolved fit config trains on."""
    from lightning_nas.classpath import instantiate_typed
    from lightning_nas.data import TaskDataModule

    return instantiate_typed(TaskDataModule, config["data"], "data").task_info()


def check_winner_task(spec: str, task: Optional[TaskInfo]) -> None:
    """A winner file written by ``search`` records its task: it must be the fit config's."""
    from lightning_nas.space import read_yaml_file

    record = read_yaml_file(Path(spec), "winner file")
    recorded = record.get("task") if isinstance(record, dict) else None
    if recorded and task is not None:
        TaskInfo.from_dict(recorded, spec).check_matches(
            task, f"winner {spec}", "the fit config", "give the fit config of the task the search was for "
            "(--fit_config) or search again for this task")


def retrain_run(run: tuple[str, dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """Train one ``(name, resolved fit config, settings)`` run; its row of the comparison table."""
    from lightning_nas.training import train_config

    name, config, settings = run
    if settings.get("threads"):
        import torch

        torch.set_num_threads(settings["threads"])
    result = train_config(config, verbose=True)
    return {"name": name, "arch_id": result.arch_id, "n_params": result.n_params, **result.drift,
            **{k: result.hardware[k] for k in ("tiles", "latency_us", "energy_uj")}}


def run_config(base: dict[str, Any], spec: str, log_dir: Path, name: str) -> dict[str, Any]:
    """``base`` (the resolved fit config) training ``spec`` (a preset or an architecture file), logging
    to ``log_dir/name``: what ``fit --config FIT_CONFIG --model.init_args.architecture SPEC`` runs."""
    from lightning_nas.fit_config import with_options

    logger = base["trainer"].get("logger")
    if not isinstance(logger, dict) or "save_dir" not in (logger.get("init_args") or {}):
        raise UserError("retrain logs each run with the fit config's trainer.logger: give it a TensorBoardLogger "
                        "(class_path and init_args with save_dir and name)")
    arch = spec if spec in PRESETS else load_architecture(spec).to_dict()
    return with_options(base, {"model.init_args.architecture": arch, "trainer.logger.init_args.save_dir": str(log_dir),
                               "trainer.logger.init_args.name": name})


def main(argv: list[str]) -> None:
    argv, fit_options = take_fit_options(argv)  # --data.*, --trainer.*, ...: options of the fit config
    cfg = build_parser().parse_args(argv)
    if cfg.executor not in ("local", "ray"):
        raise UserError(f"unknown executor {cfg.executor!r}; use local or ray")
    if cfg.top_k < 0 or (cfg.top_k == 0 and not cfg.baseline):
        raise UserError(f"top_k must be >= 1 (winners to retrain; 0 only with a baseline), got {cfg.top_k}"
                        + ("" if cfg.baseline else " with baseline null: nothing to retrain"))
    runs = [(f"winner_{k}", str(f)) for k, f in enumerate(winner_files(cfg.winners, cfg.top_k), 1)] \
        if cfg.top_k else []
    from lightning_nas.fit_config import resolve

    base = resolve(cfg.fit_config, [*cfg.fit_args, *fit_options])
    task = config_task(base) if runs else None
    for _, spec in runs:
        load_architecture(spec)  # fail early on a bad file
        check_winner_task(spec, task)
    if cfg.baseline:
        if cfg.baseline not in PRESETS:
            raise UserError(f"unknown baseline {cfg.baseline!r}; use one of {', '.join(PRESETS)} or null")
        runs.append((f"baseline_{cfg.baseline}", cfg.baseline))
    refuse_installed_copy(cfg.out_dir, "retrain out_dir", "--out_dir")
    out = check_writable(Path(cfg.out_dir).resolve(), "retrain out_dir")
    configs = {name: run_config(base, spec, out / "runs", name) for name, spec in runs}  # absolute: Ray may run elsewhere
    results: dict[str, dict[str, Any]] = {}

    def record(name: str, row: dict[str, Any]) -> None:
        results[name] = row
        write_comparison(out, [results[n] for n, _ in runs if n in results])  # in the order of the runs

    if cfg.executor == "ray":
        from lightning_nas.campaign.ray_executor import run_tasks

        def failed(run: tuple, message: str) -> dict[str, Any]:
            raise UserError(f"retrain of {run[0]} failed on Ray: {message}")

        on_ray = {"threads": max(1, int(cfg.ray.num_cpus))}
        run_tasks(retrain_run, [(name, configs[name], on_ray) for name, _ in runs],
                  lambda item, row: record(item[0], row), RayOptions(**cfg.ray.as_dict()), failed)
    else:
        for name, spec in runs:
            print(f"retrain: {name} ({spec})", file=sys.stderr)
            record(name, retrain_run((name, configs[name], {})))
    print("\n" + markdown([results[name] for name, _ in runs]))
    print(f"wrote {out}/comparison.csv and comparison.md", file=sys.stderr)

"""What a search reads and writes: the predictor it asks, and its result files and plots.

``out_dir`` gets ``winners/winner_<k>.yaml`` (accepted by ``fit``/``retrain`` as ``architecture``),
``pareto.csv``, ``history.csv``, ``summary.json``, ``best_so_far.png`` and ``pareto.png``; each file is
replaced whole (:mod:`lightning_nas.files`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from lightning_nas.classpath import instantiate
from lightning_nas.errors import UserError
from lightning_nas.files import staged_directory, write_csv, write_text
from lightning_nas.task import TaskInfo
from lightning_nas.search.evolution import Individual, SearchConfig, SearchResult, as_row


def load_predictor(spec: Union[str, dict]) -> Any:
    if isinstance(spec, dict):
        predictor = instantiate(spec)
    else:
        from lightning_nas.surrogate import SurrogatePredictor

        predictor = SurrogatePredictor.load(spec)
    if not callable(getattr(predictor, "predict", None)):
        raise UserError(f"predictor {type(predictor).__name__} has no predict(archs) method")
    return predictor


def plot(result: SearchResult, front: list[Individual], out: Path, baseline: Optional[SearchResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    for res, label in ((result, "evolution"), (baseline, "random search")):
        if res and res.best_so_far:
            evals, best = zip(*[(e, b) for e, b in res.best_so_far if b > float("-inf")] or [(0, 0.0)])
            ax.step(evals, best, where="post", label=label)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best feasible fitness")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "best_so_far.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    feas = result.feasible()
    ax.scatter([i.pred["avm"] for i in feas], [i.pred["acc_1d"] for i in feas], s=4, alpha=0.3, label="evaluated")
    sc = ax.scatter([i.pred["avm"] for i in front], [i.pred["acc_1d"] for i in front], s=18,
                    c=[i.n_params for i in front], cmap="viridis", label="Pareto front")
    fig.colorbar(sc, ax=ax, label="parameters")
    ax.set_xlabel("predicted AVM (pp)")
    ax.set_ylabel("predicted 1-day accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pareto.png")
    plt.close(fig)


def summary_table(winners: list[Individual]) -> str:
    lines = [f"{'rank':<5}{'arch_id':<14}{'params':>10}{'acc_1d':>9}{'avm':>8}{'std':>7}  architecture"]
    for k, w in enumerate(winners, 1):
        lines.append(f"{k:<5}{w.arch.id:<14}{w.n_params:>10,}{w.pred['acc_1d']:>9.2f}{w.pred['avm']:>8.2f}"
                     f"{w.pred['std']:>7.2f}  {w.arch.describe()}")
    return "\n".join(lines)


def write_outputs(out: Path, search: SearchConfig, result: SearchResult, winners: list[Individual],
                  front: list[Individual], baseline: Optional[SearchResult], task: Optional[TaskInfo] = None
                  ) -> dict[str, Any]:
    """Write the winners, CSVs, summary and plots into ``out`` as one set (staged, then moved into
    place: a failure leaves the previous run's outputs whole); returns the summary."""
    with staged_directory(out) as stage:
        return _write_outputs(stage, search, result, winners, front, baseline, task)


def _write_outputs(out: Path, search: SearchConfig, result: SearchResult, winners: list[Individual],
                   front: list[Individual], baseline: Optional[SearchResult], task: Optional[TaskInfo]
                   ) -> dict[str, Any]:
    task_record = task.to_dict() if task is not None else None
    for k, w in enumerate(winners, 1):
        write_text(out / "winners" / f"winner_{k}.yaml", yaml.safe_dump(
            {"architecture": w.arch.to_dict(), "arch_id": w.arch.id, "n_params": w.n_params,
             "predicted": w.pred, "fitness": w.fitness, "task": task_record}, sort_keys=False))
    write_csv(out / "pareto.csv", [as_row(i) for i in front])
    write_csv(out / "history.csv", [as_row(i) for i in result.history])
    summary = {"evaluations": result.evaluations, "generations": result.generations,
               "total_s": result.total_s, "predict_s": result.predict_s, "search": asdict(search),
               "winners": [as_row(w) for w in winners], "pareto_size": len(front), "task": task_record}
    if baseline is not None:
        best_random = baseline.feasible()[0].fitness if baseline.feasible() else None
        summary["random_search"] = {"evaluations": baseline.evaluations, "best_fitness": best_random}
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    plot(result, front, out, baseline)
    return summary

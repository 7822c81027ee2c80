"""What a search reads and writes: the predictor it asks, and its result files and plots.

``out_dir`` gets ``winners/winner_<k>.yaml`` (accepted by ``fit``/``retrain`` as ``architecture``; the
predictions, and the predictor's held-out errors ``prediction_mae`` when it has a report),
``pareto.csv`` (the non-dominated set over ``search.objectives``), ``history.csv`` (every evaluated
architecture with its hardware cost), ``summary.json``, ``best_so_far.png`` and ``pareto.png``; each file is
replaced whole (:mod:`lightning_nas.files`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import yaml

from lightning_nas.classpath import instantiate_typed
from lightning_nas.errors import UserError
from lightning_nas.files import staged_directory, write_csv, write_text
from lightning_nas.task import TaskInfo
from lightning_nas.search.core import Individual, Predictor, SearchConfig, SearchResult, as_row
from lightning_nas.search.objectives import RANK_SCORE, label
from lightning_nas.search.pareto import hypervolume


def load_predictor(spec: Union[str, dict]) -> Predictor:
    """The predictor of ``--predictor``: a fit-surrogate directory's, or the class ``{class_path,
    init_args}`` names (any class with ``predict(archs)``), built by jsonargparse."""
    if isinstance(spec, dict):
        return instantiate_typed(Predictor, spec, "predictor")
    from lightning_nas.surrogate import SurrogatePredictor

    return SurrogatePredictor.load(spec)


def _hypervolume_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The box the reported hypervolume is measured in: from the best to the worst value of
    each objective over the feasible evaluated architectures."""
    return points.min(axis=0), points.max(axis=0)


def front_hypervolume(result: SearchResult, front: list[Individual]) -> dict[str, Any]:
    objectives = result.evaluator.objectives
    feasible = np.asarray([objectives.oriented_of(i) for i in result.history if i.feasible], dtype=np.float64)
    if len(feasible) == 0:
        return {"value": 0.0}
    ideal, nadir = _hypervolume_box(feasible)
    points = np.asarray([objectives.oriented_of(i) for i in front], dtype=np.float64)
    value = hypervolume(points, nadir + 1e-9 * (np.abs(nadir) + 1), ideal)
    signs = [o.sign for o in objectives.objectives]
    return {"value": value, "objectives": [o.name for o in objectives.objectives],
            "best": [float(-s * v) for s, v in zip(signs, ideal)], "worst": [float(-s * v) for s, v in zip(signs, nadir)],
            "note": "fraction of the box between the best and the worst feasible value of each objective "
                    "that the Pareto front dominates (pymoo's HV indicator on scaled objectives)"}


def plot(result: SearchResult, winners: list[Individual], front: list[Individual], out: Path,
         baseline: Optional[SearchResult]) -> None:
    from lightning_nas.figures import new_figure

    objectives = result.evaluator.objectives
    ranked = any(RANK_SCORE in i.values for i in result.history[:1])
    fitness_label = f"best feasible fitness ({objectives.fitness_description(ranked)})"
    fig, ax = new_figure(figsize=(5.5, 3.5))
    for res, name in ((result, result.strategy), (baseline, "random search")):
        if res and res.best_so_far:
            evals, best = zip(*[(e, b) for e, b in res.best_so_far if b > float("-inf")] or [(0, 0.0)])
            ax.step(evals, best, where="post", label=name)
    ax.set_xlabel("evaluations (architectures predicted)")
    ax.set_ylabel(fitness_label, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "best_so_far.png")

    x_name = "avm" if "avm" in result.history[0].values else objectives.objectives[-1].name
    fig, ax = new_figure(figsize=(6, 4))
    infeasible = [i for i in result.history if not i.feasible]
    feasible = [i for i in result.history if i.feasible]
    if infeasible:
        ax.scatter([i.values[x_name] for i in infeasible], [i.values["acc_1d"] for i in infeasible], s=3,
                   c="lightgrey", label=f"infeasible ({len(infeasible):,})")
    ax.scatter([i.values[x_name] for i in feasible], [i.values["acc_1d"] for i in feasible], s=4, alpha=0.4,
               c="tab:blue", label=f"feasible ({len(feasible):,})")
    color = "energy_uj" if "energy_uj" in front[0].values else "n_params"
    sc = ax.scatter([i.values[x_name] for i in front], [i.values["acc_1d"] for i in front], s=18,
                    c=[i.values[color] for i in front], cmap="viridis",
                    label=f"Pareto front over {', '.join(o.name for o in objectives.objectives)} ({len(front)})")
    fig.colorbar(sc, ax=ax, label=label(color))
    ax.scatter([w.values[x_name] for w in winners], [w.values["acc_1d"] for w in winners], s=90, marker="*",
               c="red", edgecolors="black", linewidths=0.5, label=f"winners ({len(winners)})", zorder=5)
    for c in objectives.constraints:
        for bound in (c.max, c.min):
            if bound is None:
                continue
            if c.name == x_name:
                ax.axvline(bound, color="red", linestyle="--", linewidth=1, label=f"bound: {c.describe()}")
            elif c.name == "acc_1d":
                ax.axhline(bound, color="red", linestyle="--", linewidth=1, label=f"bound: {c.describe()}")
    others = [c.describe() for c in objectives.constraints if c.name not in (x_name, "acc_1d")]
    if others:
        ax.set_title("constraints: " + "; ".join(others), fontsize=8)
    ax.set_xlabel(label(x_name))
    ax.set_ylabel(label("acc_1d"))
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "pareto.png")


def summary_table(winners: list[Individual], evaluator: Any) -> str:
    lines = [f"{'rank':<5}{'arch_id':<14}{'params':>10}{'acc_1d':>8}{'avm':>7}{'std':>6}{'tiles':>7}"
             f"{'latency_us':>11}{'energy_uj':>10}{'fitness':>10}  architecture"]
    for k, w in enumerate(winners, 1):
        cost = evaluator.cost(w.arch)
        lines.append(f"{k:<5}{w.arch.id:<14}{w.n_params:>10,}{w.values['acc_1d']:>8.2f}{w.values['avm']:>7.2f}"
                     f"{w.values['std']:>6.2f}{cost['tiles']:>7,}{cost['latency_us']:>11,.1f}{cost['energy_uj']:>10,.1f}"
                     f"{w.fitness:>10.3f}  {w.arch.describe()}")
    return "\n".join(lines)


def write_outputs(out: Path, search: SearchConfig, result: SearchResult, winners: list[Individual],
                  front: list[Individual], baseline: Optional[SearchResult], task: Optional[TaskInfo] = None,
                  prediction_mae: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """Write the winners, CSVs, summary and plots into ``out`` as one set (staged, then moved into
    place: a failure leaves the previous run's outputs whole); returns the summary.
    ``prediction_mae``: the predictor's held-out mean absolute error per prediction (pp), recorded
    in the summary and beside each winner's predictions."""
    with staged_directory(out) as stage:
        return _write_outputs(stage, search, result, winners, front, baseline, task, prediction_mae or {})


def _write_outputs(out: Path, search: SearchConfig, result: SearchResult, winners: list[Individual],
                   front: list[Individual], baseline: Optional[SearchResult], task: Optional[TaskInfo],
                   prediction_mae: dict[str, float]) -> dict[str, Any]:
    task_record = task.to_dict() if task is not None else None
    ev = result.evaluator
    mae = {k: round(v, 4) for k, v in prediction_mae.items()}

    def row(ind: Individual) -> dict[str, Any]:
        return as_row(ind, ev.cost(ind.arch))

    for k, w in enumerate(winners, 1):
        write_text(out / "winners" / f"winner_{k}.yaml", yaml.safe_dump(
            {"architecture": w.arch.to_dict(), "arch_id": w.arch.id, "n_params": w.n_params,
             "predicted": {k: round(v, 4) for k, v in w.pred.items()},
             **({"prediction_mae": mae} if mae else {}),
             "hardware": ev.cost(w.arch),
             "fitness": round(w.fitness, 6), "task": task_record}, sort_keys=False))
    write_csv(out / "pareto.csv", [row(i) for i in front])
    write_csv(out / "history.csv", [row(i) for i in result.history])
    hv = front_hypervolume(result, front)
    summary = {"strategy": result.strategy, "evaluations": result.evaluations, "rounds": result.generations + 1,
               "rejected_over_max_params": result.rejected_params, "total_s": round(result.total_s, 3),
               "predict_s": round(result.predict_s, 3), "search": asdict(search),
               "constraints": [c.describe() for c in ev.objectives.constraints],
               "tile_size": ev.tile_size, "chip": asdict(ev.chip),
               "winners": [row(w) for w in winners], "pareto_size": len(front), "hypervolume": hv["value"],
               "hypervolume_box": hv, "task": task_record,
               "prediction_mae": mae}
    if baseline is not None:
        best_random = max((i.fitness for i in baseline.history if i.feasible), default=None)
        summary["random_search"] = {"evaluations": baseline.evaluations,
                                    "best_fitness": None if best_random is None else round(best_random, 6)}
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    plot(result, winners, front, out, baseline)
    return summary

"""``python -m lightning_nas search --config configs/search_digits.yaml``.

Evolutionary search with a surrogate predictor for accurate, drift-robust architectures
under a parameter budget. Writes to ``out_dir``: ``winners/winner_<k>.yaml`` (accepted by
``fit``/``retrain`` as ``architecture``), ``pareto.csv`` (predicted acc_1d up, AVM down,
n_params down), ``history.csv`` (every evaluated architecture), ``summary.json`` and the
plots ``best_so_far.png`` and ``pareto.png``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.classpath import instantiate
from lightning_nas.errors import UserError
from lightning_nas.files import write_csv, write_text
from lightning_nas.search.evolution import (
    Individual, SearchConfig, SearchResult, as_row, evolve, pareto_front, random_search)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m lightning_nas search", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--predictor", type=Union[str, dict], default="surrogates/digits",
                        help="A fit-surrogate directory, or {class_path, init_args} of any object with "
                             "predict(archs) -> {acc_1d, avm, std}.")
    parser.add_argument("--input_shape", type=tuple[int, int, int], default=(1, 8, 8),
                        help="(C, H, W) of the task, for the parameter count.")
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_dataclass_arguments(SearchConfig, "search")
    parser.add_argument("--top_k", type=int, default=3, help="Winners written as architecture files.")
    parser.add_argument("--baseline_random", type=bool, default=False,
                        help="Also run random search with the same number of evaluations and report it.")
    parser.add_argument("--out_dir", type=str, default="runs/search")
    return parser


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


def run_search(cfg: Any) -> dict[str, Any]:
    search = SearchConfig(**cfg.search.as_dict()) if hasattr(cfg.search, "as_dict") else cfg.search
    predictor = load_predictor(cfg.predictor)
    from tqdm import tqdm

    with tqdm(total=search.iterations, desc="generations", unit="gen", dynamic_ncols=True,
              disable=None) as bar:
        def progress(gen: int, result: SearchResult, pop: list[Individual]) -> None:
            feasible = sum(i.feasible for i in pop)
            best = max((i.fitness for i in pop if i.feasible), default=float("nan"))
            bar.set_postfix(best=f"{best:.3f}", feasible=f"{feasible}/{len(pop)}", evals=result.evaluations)
            if gen:
                bar.update(1)

        result = evolve(predictor, search, cfg.input_shape, cfg.num_classes, progress)
    baseline = None
    if cfg.baseline_random:
        baseline = random_search(predictor, search, cfg.input_shape, cfg.num_classes, result.evaluations)
    feasible = result.feasible()
    if not feasible:
        worst = min(i.pred["avm"] for i in result.history)
        raise UserError(f"no evaluated architecture satisfies the constraints (max_params={search.max_params}, "
                        f"max_avm={search.max_avm}); the lowest predicted AVM was {worst:.2f} pp: "
                        "raise search.max_avm or search.max_params")
    out = Path(cfg.out_dir)
    (out / "winners").mkdir(parents=True, exist_ok=True)
    winners = feasible[: cfg.top_k]
    for k, w in enumerate(winners, 1):
        write_text(out / "winners" / f"winner_{k}.yaml", yaml.safe_dump(
            {"architecture": w.arch.to_dict(), "arch_id": w.arch.id, "n_params": w.n_params,
             "predicted": w.pred, "fitness": w.fitness}, sort_keys=False))
    front = pareto_front(feasible)
    write_csv(out / "pareto.csv", [as_row(i) for i in front])
    write_csv(out / "history.csv", [as_row(i) for i in result.history])
    summary = {"evaluations": result.evaluations, "generations": result.generations,
               "total_s": result.total_s, "predict_s": result.predict_s, "search": asdict(search),
               "winners": [as_row(w) for w in winners], "pareto_size": len(front)}
    if baseline is not None:
        best_random = baseline.feasible()[0].fitness if baseline.feasible() else None
        summary["random_search"] = {"evaluations": baseline.evaluations, "best_fitness": best_random}
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    plot(result, front, out, baseline)
    print(f"\nsearch: {result.evaluations} architectures evaluated in {result.generations} generations, "
          f"{result.total_s:.2f} s ({result.predict_s:.2f} s in the predictor)", file=sys.stderr)
    print(summary_table(winners))
    if baseline is not None:
        print(f"random search, same {baseline.evaluations} evaluations: best fitness "
              f"{summary['random_search']['best_fitness']}", file=sys.stderr)
    print(f"wrote {out}/winners/, pareto.csv ({len(front)} architectures), history.csv, summary.json, "
          "best_so_far.png, pareto.png", file=sys.stderr)
    return summary


def main(argv: list[str]) -> None:
    run_search(build_parser().parse_args(argv))

"""Quality of every search strategy at equal evaluation budgets, over seeds and landscapes.

Landscapes: ``target`` (one known optimum, :class:`lightning_nas.search.landscapes.Target`),
``deceptive`` (a narrow global peak among broad local ones, :class:`~lightning_nas.search.landscapes.Deceptive`)
and ``surrogate`` (the shipped digits surrogate, optimum unknown: the best score any run found is
shown). Each strategy gets the same number of predictor evaluations (``--evaluations``; the
search's round cap is raised so that budget, not rounds, ends it); random search also runs with
10x that budget as a reference. Prints per landscape and strategy the median/min/max of the best
fitness (predicted 1-day accuracy, %), how many seeds reached the known optimum (within
``--tolerance``), the hypervolume of the Pareto front over (acc_1d max, AVM min, energy min) in a
box common to all runs of the landscape, the evaluations used and the time per run (every
strategy, TPE included, runs the full budget)::

    .venv/bin/python benchmarks/search_quality.py --seeds 5 --evaluations 4000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_nas.search.core import SearchConfig, run  # noqa: E402
from lightning_nas.search.landscapes import Deceptive, Target  # noqa: E402
from lightning_nas.search.pareto import hypervolume, pareto_front  # noqa: E402
from lightning_nas.search.strategies import STRATEGIES, build_strategy  # noqa: E402

SHAPE, CLASSES, MAX_PARAMS = (1, 8, 8), 10, 100_000
OBJECTIVES = ["acc_1d", "avm", "energy_uj"]


def landscape(name: str):
    if name == "target":
        return Target, Target.optimum_value
    if name == "deceptive":
        return Deceptive, Deceptive.optimum_value
    from lightning_nas.surrogate import SurrogatePredictor

    loaded = SurrogatePredictor.load(Path(__file__).resolve().parents[1] / "surrogates" / "digits")
    return (lambda: loaded), None


def one_run(strategy: str, make, seed: int, evaluations: int) -> dict:
    cfg = SearchConfig(max_params=MAX_PARAMS, seed=seed, objectives=OBJECTIVES, max_evaluations=evaluations,
                       iterations=10 * evaluations)
    start = time.perf_counter()
    result = run(build_strategy(strategy), make(), cfg, SHAPE, CLASSES)
    seconds = time.perf_counter() - start
    objectives = result.evaluator.objectives
    feasible = result.feasible()
    front = pareto_front(feasible, objectives.oriented_of)
    return {"best": result.best, "seconds": seconds, "evaluations": result.evaluations,
            "front": np.asarray([objectives.oriented_of(i) for i in front]),
            "points": np.asarray([objectives.oriented_of(i) for i in feasible])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--evaluations", type=int, default=4000)
    ap.add_argument("--landscapes", nargs="+", default=["target", "deceptive", "surrogate"])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--tolerance", type=float, default=0.01, help="pp below the known optimum that still counts")
    ap.add_argument("--no-random-10x", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    print("| landscape | strategy | evaluations | best fitness median (min-max) | optimum reached | "
          "hypervolume median | s/run |\n|---|---|---|---|---|---|---|", flush=True)
    for name in args.landscapes:
        make, optimum = landscape(name)
        runs = {s: [one_run(s, make, seed, args.evaluations) for seed in range(args.seeds)] for s in args.strategies}
        if not args.no_random_10x:
            runs["random_search 10x"] = [one_run("random_search", make, seed, 10 * args.evaluations)
                                         for seed in range(args.seeds)]
        allpoints = np.vstack([r["points"] for rs in runs.values() for r in rs if len(r["points"])])
        ideal, nadir = allpoints.min(axis=0), allpoints.max(axis=0)
        best_known = optimum if optimum is not None else max(r["best"] for rs in runs.values() for r in rs)
        for strategy, rs in runs.items():
            bests = [r["best"] for r in rs]
            hv = [hypervolume(r["front"], nadir + 1e-9, ideal) for r in rs]
            reached = sum(b >= best_known - args.tolerance for b in bests)
            evaluations = statistics.median(r["evaluations"] for r in rs)
            print(f"| {name} | {strategy} | {evaluations:,.0f} | {statistics.median(bests):.2f} "
                  f"({min(bests):.2f}-{max(bests):.2f}) | {reached}/{len(rs)}"
                  f"{'' if optimum is not None else ' of best found'} | {statistics.median(hv):.3f} | "
                  f"{statistics.median(r['seconds'] for r in rs):.2f} |", flush=True)
        print(f"| {name} | (best known: {best_known:.2f}) | | | | | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

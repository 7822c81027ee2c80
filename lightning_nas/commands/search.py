"""``python -m lightning_nas search --config configs/digits/search.yaml``.

Evolutionary search with a surrogate predictor for accurate, drift-robust architectures
under a parameter budget. Writes to ``out_dir``: ``winners/winner_<k>.yaml`` (accepted by
``fit``/``retrain`` as ``architecture``), ``pareto.csv`` (predicted acc_1d up, AVM down,
n_params down), ``history.csv`` (every evaluated architecture), ``summary.json`` and the
plots ``best_so_far.png`` and ``pareto.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Union

from jsonargparse import ActionConfigFile

from lightning_nas.errors import UserError
from lightning_nas.files import check_writable
from lightning_nas.parsing import CommandParser
from lightning_nas.search.evolution import Individual, SearchConfig, SearchResult, evolve, pareto_front, random_search
from lightning_nas.search.outputs import load_predictor, summary_table, write_outputs
from lightning_nas.space import check_task_shape
from lightning_nas.task import TaskInfo, task_of


def build_parser() -> CommandParser:
    parser = CommandParser(command="search", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--predictor", type=Union[str, dict], default="surrogates/digits",
                        help="A fit-surrogate directory, or {class_path, init_args} of any object with "
                             "predict(archs) -> {acc_1d, avm, std}.")
    parser.add_argument("--task", type=Optional[str], default=None,
                        help="The task searched for (digits, cifar10, kws, vww or a datamodule class path). A "
                             "fit-surrogate directory records its task; a surrogate of another task is refused.")
    parser.add_argument("--input_shape", type=Optional[tuple[int, int, int]], default=None,
                        help="(C, H, W), for the parameter count. Default: the surrogate's (or --task's) task; "
                             "needed for a custom predictor without --task.")
    parser.add_argument("--num_classes", type=Optional[int], default=None,
                        help="Number of classes. Default: from the surrogate's (or --task's) task.")
    parser.add_dataclass_arguments(SearchConfig, "search")
    parser.add_argument("--top_k", type=int, default=3, help="Winners written as architecture files.")
    parser.add_argument("--baseline_random", type=bool, default=False,
                        help="Also run random search with the same number of evaluations and report it.")
    parser.add_argument("--out_dir", type=str, default="runs/search")
    return parser


def run_search(cfg: Any) -> dict[str, Any]:
    search = SearchConfig(**cfg.search.as_dict()) if hasattr(cfg.search, "as_dict") else cfg.search
    if cfg.top_k < 1:
        raise UserError(f"top_k must be >= 1 (winners to write), got {cfg.top_k}")
    check_writable(cfg.out_dir, "search out_dir")  # before the search, not after it
    predictor = load_predictor(cfg.predictor)
    task = search_task(predictor, cfg.predictor, cfg.task, cfg.input_shape, cfg.num_classes)
    cfg.input_shape, cfg.num_classes = task.input_shape, task.num_classes
    print(f"search: task {task.describe()}", file=sys.stderr)
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
    winners = feasible[: cfg.top_k]
    front = pareto_front(feasible)
    summary = write_outputs(out, search, result, winners, front, baseline, task)
    print(f"\nsearch: {result.evaluations} architectures evaluated in {result.generations} generations, "
          f"{result.total_s:.2f} s ({result.predict_s:.2f} s in the predictor)", file=sys.stderr)
    print(summary_table(winners))
    if baseline is not None:
        print(f"random search, same {baseline.evaluations} evaluations: best fitness "
              f"{summary['random_search']['best_fitness']}", file=sys.stderr)
    print(f"wrote {out}/winners/, pareto.csv ({len(front)} architectures), history.csv, summary.json, "
          "best_so_far.png, pareto.png", file=sys.stderr)
    return summary


def search_task(predictor: Any, spec: Any, task: Optional[str], input_shape: Optional[tuple],
                num_classes: Optional[int]) -> TaskInfo:
    """The task of this search: the surrogate's recorded task (``--task``, ``--input_shape`` and
    ``--num_classes`` must agree with it), else ``--task``'s datamodule (flags override its shape),
    else the flags alone (a custom predictor)."""
    meta = getattr(predictor, "meta", None)  # a fit-surrogate directory's metadata; custom predictors have none
    meta_task = meta.get("task") if isinstance(meta, dict) else None
    recorded = TaskInfo.from_dict(meta_task, f"surrogate {spec}") if meta_task else None
    asked = task_of(task) if task else None
    if recorded is not None:
        if asked is not None:
            recorded.check_matches(asked, f"surrogate {spec}", "this search (--task)",
                                   f"fit a surrogate on a {asked.name} campaign or search for {recorded.name}",
                                   name_only=True)  # the surrogate's own shape (e.g. a VWW resolution) wins
        flags = TaskInfo(recorded.name, recorded.datamodule, tuple(input_shape or recorded.input_shape),
                         num_classes or recorded.num_classes)
        recorded.check_matches(flags, f"surrogate {spec}", "--input_shape/--num_classes",
                               "drop those flags (the surrogate knows its task)")
        return recorded
    base = asked or TaskInfo(name="custom")
    shape = tuple(input_shape) if input_shape is not None else (base.input_shape if asked else None)
    classes = num_classes if num_classes is not None else (base.num_classes if asked else None)
    if shape is None or classes is None:
        raise UserError("this predictor records no task: give --task (digits, cifar10, kws, vww) or both "
                        "--input_shape and --num_classes")
    check_task_shape(shape, classes)
    return TaskInfo(base.name, base.datamodule, shape, classes)


def main(argv: list[str]) -> None:
    run_search(build_parser().parse_args(argv))

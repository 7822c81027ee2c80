"""``python -m lightning_nas search --config configs/digits/search.yaml``.

Search with a surrogate predictor for accurate, drift-robust, hardware-cheap architectures under
constraints, with a pluggable strategy (``search.strategy``: the AnalogNAS EA by default). Writes
to ``out_dir``: ``winners/winner_<k>.yaml`` (accepted by ``fit``/``retrain`` as ``architecture``),
``pareto.csv`` (the non-dominated architectures over ``search.objectives``), ``history.csv`` (every
evaluated architecture, with its hardware cost), ``summary.json`` and the plots
``best_so_far.png`` and ``pareto.png``. With a fit-surrogate predictor, the held-out error of its
predictions (``prediction_mae``) is printed beside each constraint on them and recorded in the
summary and the winner files.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from jsonargparse import ActionConfigFile, Namespace, get_loader, set_loader

from lightning_nas.analog import AnalogConfig
from lightning_nas.checkout import refuse_installed_copy
from lightning_nas.classpath import checked_mapping
from lightning_nas.errors import UserError
from lightning_nas.files import check_writable
from lightning_nas.parsing import CommandParser
from lightning_nas.search.core import Individual, Predictor, SearchConfig, SearchResult, run
from lightning_nas.search.objectives import RANK_SCORE
from lightning_nas.search.outputs import load_predictor, summary_table, write_outputs
from lightning_nas.search.pareto import pareto_front
from lightning_nas.search.strategies import STRATEGIES, build_strategy, class_path_of
from lightning_nas.space import check_task_shape
from lightning_nas.surrogate.meta import SurrogateMeta
from lightning_nas.task import TaskInfo, task_of


SWITCHABLE = {"search.strategy": class_path_of, "predictor": str}
"""The search's options selected by class (:func:`~lightning_nas.parsing.with_class_choices`: a
strategy's name given on the command line becomes its class path, a class switched on the command
line starts from its own defaults and its init_args are the chosen class's, whatever their order)."""


def load_search_config(text: str, path: Optional[str] = None) -> Any:
    """jsonargparse's YAML loader for the search parser, which reads config files (``path`` given)
    and option values with it. In a config file, a ``search.strategy`` given by name becomes its
    class path and a class's mapping for ``search.strategy`` or ``predictor`` is checked
    (:func:`~lightning_nas.classpath.checked_mapping`: an empty ``init_args`` is none, other keys are
    an error line). A mapping with a ``strategy`` (a ``--search FILE``, which jsonargparse reads as
    a value) gets its strategy's class path when the name is one."""
    value = get_loader("yaml")(text)
    if not isinstance(value, dict):
        return value
    if path is not None:
        if isinstance(value.get("search"), dict) and "strategy" in value["search"]:
            value["search"]["strategy"] = class_path_of(value["search"]["strategy"])
        if "predictor" in value:
            value["predictor"] = checked_mapping(value["predictor"], "predictor")
    if "strategy" in value:
        try:
            value["strategy"] = class_path_of(value["strategy"])
        except UserError:  # not a strategy (another option's mapping): the parser says what is wrong
            pass
    return value


set_loader("lightning_nas.search", load_search_config, exceptions=(yaml.YAMLError,))


def build_parser() -> CommandParser:
    parser = CommandParser(command="search", description=__doc__, parser_mode="lightning_nas.search",
                           switchable=SWITCHABLE)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--predictor", type=Optional[Union[Predictor, str]], default="surrogates/digits",
                        help="A fit-surrogate directory, or {class_path, init_args} of any class with "
                             "predict(archs) -> {acc_1d, avm, std}; --predictor.init_args.NAME VALUE sets one "
                             "argument of the latter.")
    parser.add_argument("--task", type=Optional[str], default=None,
                        help="The task searched for (digits, cifar10, kws, vww or a datamodule class path). A "
                             "fit-surrogate directory records its task; a surrogate of another task is refused.")
    parser.add_argument("--input_shape", type=Optional[tuple[int, int, int]], default=None,
                        help="(C, H, W), for the parameter count. Default: the surrogate's (or --task's) task; "
                             "needed for a custom predictor without --task.")
    parser.add_argument("--num_classes", type=Optional[int], default=None,
                        help="Number of classes. Default: from the surrogate's (or --task's) task.")
    parser.add_class_arguments(SearchConfig, "search")
    parser.add_argument("--top_k", type=int, default=3, help="Winners written as architecture files.")
    parser.add_argument("--baseline_random", type=bool, default=False,
                        help="Also run random search with the same number of evaluations and report it.")
    parser.add_argument("--out_dir", type=str, default="runs/search")
    return parser


def parse(argv: list[str]) -> Any:
    """The search options. The predictor and the strategy are checked by jsonargparse (class, argument
    names and types, defaults filled in) and come back as ``{class_path, init_args}`` mappings (a
    predictor directory as its path)."""
    cfg = build_parser().parse_args(argv)
    if cfg.predictor is None:
        raise UserError("predictor is null; give a fit-surrogate directory or {class_path, init_args} of a predictor")
    if cfg.search.strategy is None:
        raise UserError(f"search.strategy is null; give a strategy ({', '.join(STRATEGIES)}) or {{class_path, init_args}}")
    if isinstance(cfg.predictor, Namespace):
        cfg.predictor = cfg.predictor.as_dict()
    elif cfg.predictor.lstrip().startswith("{"):  # a mapping whose class can't be a predictor: say why, not "no such directory"
        try:
            spec = yaml.safe_load(cfg.predictor)
        except yaml.YAMLError:
            raise UserError(f"invalid value {cfg.predictor!r} for predictor: neither a directory nor a "
                            "{class_path, init_args} mapping") from None
        load_predictor(spec)
    cfg.search.strategy = cfg.search.strategy.as_dict()
    return cfg


def tile_size_of(predictor: Any, search: SearchConfig) -> int:
    """The tile size of the hardware cost: ``search.chip.tile_size``, else the hardware the surrogate
    was trained on, else the default analog preset's."""
    if search.chip.get("tile_size") is not None:
        return int(search.chip["tile_size"])
    meta = SurrogateMeta.of(predictor)
    if meta is not None and meta.tile_size is not None:
        return meta.tile_size
    return AnalogConfig().resolved().tile_size


def std_floor_of(predictor: Any) -> Optional[float]:
    meta = SurrogateMeta.of(predictor)
    return meta.std_floor if meta is not None else None


def prediction_errors_of(predictor: Any) -> dict[str, float]:
    """The held-out mean absolute error (pp) of the predictor's ``acc_1d``, ``avm`` and ``std``, as
    its fit-surrogate report recorded them (:meth:`SurrogateMeta.prediction_errors`); empty for a
    predictor without such a report."""
    meta = SurrogateMeta.of(predictor)
    return meta.prediction_errors() if meta is not None else {}


def run_search(cfg: Any) -> dict[str, Any]:
    """Search, write the outputs to ``cfg.out_dir``, print the winners; returns the summary."""
    return search_and_write(cfg)[0]


def search_and_write(cfg: Any) -> tuple[dict[str, Any], SearchResult]:
    """:func:`run_search`, also returning the search's result (its feasible architectures, ranked)."""
    search = SearchConfig(**cfg.search.as_dict()) if hasattr(cfg.search, "as_dict") else cfg.search
    if cfg.top_k < 1:
        raise UserError(f"top_k must be >= 1 (winners to write), got {cfg.top_k}")
    refuse_installed_copy(cfg.out_dir, "search out_dir", "--out_dir")
    check_writable(cfg.out_dir, "search out_dir")  # before the search, not after it
    strategy = build_strategy(search.strategy)
    predictor = load_predictor(cfg.predictor)
    task = search_task(predictor, cfg.predictor, cfg.task, cfg.input_shape, cfg.num_classes)
    cfg.input_shape, cfg.num_classes = task.input_shape, task.num_classes
    tile_size, std_floor = tile_size_of(predictor, search), std_floor_of(predictor)
    print(f"search: task {task.describe()}; strategy {type(strategy).__name__}", file=sys.stderr)
    from tqdm import tqdm

    with tqdm(total=search.iterations, desc="search", unit="round", dynamic_ncols=True, disable=None) as bar:
        def progress(round_: int, result: SearchResult, pop: list[Individual]) -> None:
            bar.set_postfix(best=f"{result.best:.3f}", evals=result.evaluations,
                            feasible=f"{sum(i.feasible for i in result.history)}/{result.evaluations}")
            if round_:
                bar.update(1)

        result = run(strategy, predictor, search, cfg.input_shape, cfg.num_classes, progress, tile_size, std_floor)
    baseline = None
    if cfg.baseline_random:
        random_cfg = replace(search, max_evaluations=result.evaluations, iterations=10 ** 6, time_limit_s=search.time_limit_s)
        baseline = run(build_strategy("random_search"), predictor, random_cfg, cfg.input_shape,
                       cfg.num_classes, None, tile_size, std_floor)
    feasible = result.feasible()
    if not feasible:
        bounds = "; ".join(c.describe() for c in result.evaluator.objectives.constraints)
        raise UserError(f"none of the {result.evaluations} evaluated architectures satisfies the constraints ({bounds}); "
                        "relax them (search.max_avm, search.max_params, search.constraints, search.fit_chip false "
                        "or a larger search.chip.n_tiles for the chip bound)")
    out = Path(cfg.out_dir)
    winners = feasible[: cfg.top_k]
    front = pareto_front(feasible, result.evaluator.objectives.oriented_of)
    errors = prediction_errors_of(predictor)
    summary = write_outputs(out, search, result, winners, front, baseline, task, errors)
    print(f"\nsearch: {result.evaluations} architectures evaluated in {result.generations + 1} rounds "
          f"({result.rejected_params} proposals over max_params not predicted), {result.total_s:.2f} s "
          f"({result.predict_s:.2f} s in the predictor)", file=sys.stderr)
    print(summary_table(winners, result.evaluator))
    print(f"fitness: {result.evaluator.objectives.fitness_description(any(RANK_SCORE in w.values for w in winners))}",
          file=sys.stderr)
    for c in result.evaluator.objectives.constraints:
        if c.name in errors:
            over = "" if c.name == "acc_1d" else ", over held-out architectures that learned"
            print(f"constraint {c.describe()}: on predictions with a held-out mean absolute error of "
                  f"{errors[c.name]:.2f} pp (the surrogate's report{over}), so an architecture near the bound "
                  "may measure on either side of it", file=sys.stderr)
    if baseline is not None:
        print(f"random search, same {baseline.evaluations} evaluations: best fitness "
              f"{summary['random_search']['best_fitness']}", file=sys.stderr)
    print(f"wrote {out}/winners/, pareto.csv ({len(front)} architectures over "
          f"{result.evaluator.objectives.describe()}; hypervolume {summary['hypervolume']:.4f}), history.csv, "
          "summary.json, best_so_far.png, pareto.png", file=sys.stderr)
    return summary, result


def search_task(predictor: Any, spec: Any, task: Optional[str], input_shape: Optional[tuple],
                num_classes: Optional[int]) -> TaskInfo:
    """The task of this search: the surrogate's recorded task (``--task``, ``--input_shape`` and
    ``--num_classes`` must agree with it), else ``--task``'s datamodule (flags override its shape),
    else the flags alone (a custom predictor)."""
    meta = SurrogateMeta.of(predictor)  # a fit-surrogate directory's metadata; custom predictors mostly have none
    meta_task = meta.task if meta is not None else None
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
    run_search(parse(argv))

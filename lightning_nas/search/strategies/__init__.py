"""Search strategies, one module each, all behind the ask/tell interface of
:class:`lightning_nas.search.core.Strategy`. ``search.strategy`` takes a name below or
``{class_path, init_args}`` of any :class:`Strategy` subclass (a user's own included)."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from lightning_nas.classpath import checked_mapping
from lightning_nas.errors import UserError
from lightning_nas.search.core import DEFAULT_STRATEGY, Strategy

STRATEGIES = {
    "analognas_ea": DEFAULT_STRATEGY,
    "regularized_evolution": "lightning_nas.search.strategies.regularized_evolution.RegularizedEvolution",
    "random_search": "lightning_nas.search.strategies.random_search.RandomSearch",
    "nsga2": "lightning_nas.search.strategies.nsga2.NSGA2",
    "tpe": "lightning_nas.search.strategies.tpe.TPE",
    "reinforce": "lightning_nas.search.strategies.reinforce.Reinforce",
}


def class_path_of(spec: Any) -> Any:
    """``spec`` (a strategy name, class name or path, or ``{class_path, init_args}``) with a name of
    :data:`STRATEGIES` or a built-in strategy's class name (``TPE``) replaced by its class path; an
    other name without a dot is one error line listing the names."""
    if isinstance(spec, dict):
        spec = checked_mapping(spec, "search.strategy")
        return {**spec, "class_path": class_path_of(spec["class_path"])} if "class_path" in spec else spec
    if not isinstance(spec, str) or "." in spec:
        return spec
    by_class = {path.rsplit(".", 1)[-1]: path for path in STRATEGIES.values()}
    if spec not in STRATEGIES and spec not in by_class:
        raise UserError(f"unknown search.strategy {spec!r}; use one of {', '.join(STRATEGIES)} or a class path")
    return STRATEGIES.get(spec) or by_class[spec]


def build_strategy(spec: Any) -> Strategy:
    """A strategy from a name of :data:`STRATEGIES`, a class name or path, or ``{class_path,
    init_args}``, built by jsonargparse as ``--search.strategy`` is; its ``seed`` (default ``None``)
    is ``search.seed`` unless set."""
    from lightning_nas.classpath import instantiate_typed

    strategy = instantiate_typed(Strategy, class_path_of(spec), "search.strategy")
    seed = inspect.signature(type(strategy)).parameters.get("seed")
    if seed is not None and seed.default is not None and getattr(strategy, "seed", None) == seed.default:
        warnings.warn(f"search.strategy {type(strategy).__name__}: its seed defaults to {seed.default!r}, so it runs "
                      "with that whatever search.seed is; declare seed: Optional[int] = None and seed from "
                      "self.run_seed to follow search.seed", stacklevel=2)
    return strategy

"""Search strategies, one module each, all behind the ask/tell interface of
:class:`lightning_nas.search.core.Strategy`. ``search.strategy`` takes a name below or
``{class_path, init_args}`` of any :class:`Strategy` subclass (a user's own included)."""

from __future__ import annotations

import inspect
from typing import Any

from lightning_nas.errors import UserError
from lightning_nas.search.core import Strategy

STRATEGIES = {
    "analognas_ea": "lightning_nas.search.strategies.analognas_ea.AnalogNASEvolution",
    "regularized_evolution": "lightning_nas.search.strategies.regularized_evolution.RegularizedEvolution",
    "random_search": "lightning_nas.search.strategies.random_search.RandomSearch",
    "nsga2": "lightning_nas.search.strategies.nsga2.NSGA2",
    "tpe": "lightning_nas.search.strategies.tpe.TPE",
    "reinforce": "lightning_nas.search.strategies.reinforce.Reinforce",
}


def build_strategy(spec: Any, seed: int) -> Strategy:
    """A strategy from a name, a class path or ``{class_path, init_args}``; ``seed`` is passed to
    strategies whose constructor takes one (unless ``init_args`` sets it)."""
    from lightning_nas.classpath import check_simple_types, resolve

    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str):
        raise UserError(f"search.strategy must be a name ({', '.join(STRATEGIES)}) or {{class_path, init_args}}, "
                        f"got {spec!r}")
    unknown_keys = set(spec) - {"class_path", "init_args"}
    if unknown_keys:
        raise UserError(f"search.strategy: unknown key(s) {', '.join(sorted(unknown_keys))}; use class_path, init_args")
    path = STRATEGIES.get(spec["class_path"], spec["class_path"])
    if "." not in path:
        raise UserError(f"unknown search.strategy {spec['class_path']!r}; use one of {', '.join(STRATEGIES)} or a "
                        "class path")
    cls = resolve(path)
    if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
        raise UserError(f"search.strategy {path} is not a lightning_nas.search.core.Strategy subclass")
    args = dict(spec.get("init_args") or {})
    parameters = inspect.signature(cls).parameters
    bad = [k for k in args if k not in parameters]
    if bad:
        allowed = ", ".join(p for p in parameters if p != "self") or "none"
        raise UserError(f"search.strategy {spec['class_path']}: unknown argument(s) {', '.join(bad)}; "
                        f"allowed: {allowed}")
    check_simple_types(cls, args, f"search.strategy {spec['class_path']}")
    if "seed" in parameters and "seed" not in args:
        args["seed"] = seed
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise UserError(f"search.strategy {spec['class_path']}: {exc}") from None

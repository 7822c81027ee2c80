"""Search objectives and constraints as data.

An :class:`Objective` has a name, a direction (``max`` or ``min``) and a source:

* ``predictor``: an output of the predictor (``acc_1d``, ``avm``, ``std`` or any other key it returns);
* ``n_params``: the parameter count;
* ``hardware``: a figure of the analog cost model (:data:`lightning_nas.hardware_cost.COST_FIELDS`:
  ``tiles``, ``utilisation``, ``mvms``, ``adc_conversions``, ``latency_us``, ``energy_uj``);
* a dotted path ``pkg.module.function``: ``function(archs, values) -> array`` where ``values`` maps
  the names above to arrays over ``archs``.

In a config an objective is a name (built-in names know their source and direction: accuracy
and utilisation up, everything else down) or a mapping ``{name, direction, source}``. A
:class:`Constraint` bounds any objective: ``{name: tiles, max: 64}`` (bounds are inclusive).

Single-objective strategies maximise one *fitness*: an objective's name (its direction
applied), ``acc_over_std`` (AnalogNAS's 1-day accuracy over its standard deviation, the std
floored at ``std_floor``: the surrogate's measured label-noise floor or a value the user sets,
never a silent 1e-3) or a dotted path ``function(archs, values) -> array`` (higher is better).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from lightning_nas.errors import UserError
from lightning_nas.hardware_cost import COST_FIELDS

PREDICTOR_OUTPUTS = ("acc_1d", "avm", "std")
RANK_SCORE = "acc_1d_score"
"""A predictor's optional score that orders acc_1d without ties (the surrogate's raw ranker score,
of which its acc_1d is a calibration that caps beyond the campaign's range): with fitness acc_1d a
search ranks by it, while acc_1d stays what is displayed and what constraints use."""
INTERVAL_OUTPUTS = tuple(f"{label}_{side}" for label in PREDICTOR_OUTPUTS for side in ("low", "high"))
"""The bounds of a surrogate's prediction intervals (:mod:`lightning_nas.surrogate.intervals`):
constraints and objectives can use them instead of the point predictions (``avm_high < 2``)."""
OPTIONAL_PREDICTOR_OUTPUTS = ("p_learned", "acc_1d_score", *INTERVAL_OUTPUTS)
"""Outputs of the shipped predictor that a plug-in predictor need not return (unless used)."""
SOURCES = ("predictor", "n_params", "hardware")
UNITS = {"acc_1d": "%", "avm": "pp", "std": "pp", "p_learned": "probability", "n_params": "parameters", "tiles": "tiles",
         "utilisation": "fraction of tile cells", "mvms": "MVMs per inference",
         "adc_conversions": "ADC conversions per inference", "latency_us": "us per inference",
         "energy_uj": "uJ per inference", "fitness": ""}
LABELS = {"acc_1d": "predicted 1-day accuracy", "avm": "predicted AVM", "std": "predicted 1-day std",
          "p_learned": "predicted probability of learning",
          "n_params": "parameters", "tiles": "analog tiles", "utilisation": "tile utilisation",
          "mvms": "tile MVMs", "adc_conversions": "ADC conversions", "latency_us": "estimated latency",
          "energy_uj": "estimated energy",
          **{f"{k}_{side}": f"{'lower' if side == 'low' else 'upper'} bound of the {LABEL} (80 % interval)"
             for k, LABEL in (("acc_1d", "predicted 1-day accuracy"), ("avm", "predicted AVM"),
                              ("std", "predicted 1-day std")) for side in ("low", "high")}}
UNITS.update({name: UNITS[name.rsplit("_", 1)[0]] for name in INTERVAL_OUTPUTS})


def label(name: str) -> str:
    """An axis label with its unit, e.g. ``predicted AVM (pp)``."""
    unit = UNITS.get(name, "")
    return f"{LABELS.get(name, name)} ({unit})" if unit else LABELS.get(name, name)


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str = "max"
    source: str = "predictor"

    @property
    def sign(self) -> float:
        """+1 to maximise, -1 to minimise (``sign * value`` is always "higher is better")."""
        return 1.0 if self.direction == "max" else -1.0


@dataclass(frozen=True)
class Constraint:
    name: str
    max: Optional[float] = None
    min: Optional[float] = None
    strict: bool = False
    """``value < max`` / ``value > min`` instead of ``<=`` / ``>=`` (the AnalogNAS T_p and T_AVM)."""

    def satisfied(self, values: np.ndarray) -> np.ndarray:
        ok = np.ones(len(values), dtype=bool)
        if self.max is not None:
            ok &= (values < self.max) if self.strict else (values <= self.max)
        if self.min is not None:
            ok &= (values > self.min) if self.strict else (values >= self.min)
        return ok & ~np.isnan(values)

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{self.name} {'>' if self.strict else '>='} {self.min:g}")
        if self.max is not None:
            parts.append(f"{self.name} {'<' if self.strict else '<='} {self.max:g}")
        return " and ".join(parts)


def default_source(name: str) -> Optional[str]:
    if name == "n_params":
        return "n_params"
    if name in COST_FIELDS and name != "fits_chip":
        return "hardware"
    if name in PREDICTOR_OUTPUTS + OPTIONAL_PREDICTOR_OUTPUTS:
        return "predictor"
    return None


def default_direction(name: str) -> str:
    return "max" if name in ("acc_1d", "utilisation", "p_learned") or name.startswith("acc") else "min"


def parse_objective(spec: Any) -> Objective:
    """An objective from a name or a ``{name, direction, source}`` mapping (one clear error otherwise)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise UserError(f"an objective is a name or a mapping {{name, direction, source}}, got {spec!r}")
    unknown = set(spec) - {"name", "direction", "source"}
    if unknown:
        raise UserError(f"objective {spec['name']!r}: unknown key(s) {', '.join(sorted(unknown))}; use name, "
                        "direction, source")
    name = spec["name"]
    source = spec.get("source") or default_source(name)
    if source is None:
        raise UserError(f"objective {name!r} has no built-in source; give source: predictor (an output of the "
                        "predictor), or a dotted path to a function(archs, values) -> array. Built-in names: "
                        f"{', '.join(PREDICTOR_OUTPUTS + OPTIONAL_PREDICTOR_OUTPUTS + ('n_params',) + tuple(f for f in COST_FIELDS if f != 'fits_chip'))}")
    if source == "hardware" and (name not in COST_FIELDS or name == "fits_chip"):
        raise UserError(f"objective {name!r}: the hardware cost model has no such figure; use one of "
                        f"{', '.join(f for f in COST_FIELDS if f != 'fits_chip')}")
    if source not in SOURCES and "." not in source:
        raise UserError(f"objective {name!r}: unknown source {source!r}; use predictor, n_params, hardware or a "
                        "dotted path to a function")
    direction = spec.get("direction") or default_direction(name)
    if direction not in ("max", "min"):
        raise UserError(f"objective {name!r}: direction must be max or min, got {direction!r}")
    return Objective(name, direction, source)


def parse_constraint(spec: Any) -> Constraint:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise UserError(f"a constraint is a mapping {{name, max and/or min}}, e.g. {{name: tiles, max: 64}}; got {spec!r}")
    unknown = set(spec) - {"name", "max", "min"}
    if unknown:
        raise UserError(f"constraint on {spec['name']!r}: unknown key(s) {', '.join(sorted(unknown))}; use name, "
                        "max, min")
    for key in ("max", "min"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"constraint on {spec['name']!r}: {key} must be a number, got {value!r}")
    if spec.get("max") is None and spec.get("min") is None:
        raise UserError(f"constraint on {spec['name']!r} needs max or min")
    if spec.get("max") is not None and spec.get("min") is not None and spec["min"] > spec["max"]:
        raise UserError(f"constraint on {spec['name']!r}: min {spec['min']} is above max {spec['max']}")
    parse_objective(spec["name"])  # a name the search can compute
    return Constraint(spec["name"], spec.get("max"), spec.get("min"))


class ObjectiveSet:
    """Computes the values of objectives, constraints and the fitness for a batch of architectures."""

    def __init__(self, objectives: Sequence[Any], constraints: Sequence[Any], fitness: str,
                 std_floor: Optional[float], max_params: Optional[int], max_avm: Optional[float],
                 pick_by: Optional[str] = None, max_tiles: Optional[int] = None) -> None:
        self.objectives = [parse_objective(o) for o in objectives]
        if not self.objectives:
            raise UserError("search.objectives must name at least one objective, e.g. [acc_1d, avm, energy_uj]")
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise UserError(f"search.objectives names an objective twice: {names}")
        self.constraints = [parse_constraint(c) for c in constraints]
        if max_params is not None:
            self.constraints.insert(0, Constraint("n_params", max=max_params, strict=True))
        if max_avm is not None:
            self.constraints.append(Constraint("avm", max=max_avm, strict=True))
        if max_tiles is not None and not any(c.name == "tiles" and c.max is not None for c in self.constraints):
            self.constraints.append(Constraint("tiles", max=max_tiles))  # search.fit_chip: the chip's tiles
        self.fitness_name = "acc_1d" if fitness == "acc" else fitness  # "acc": the AnalogNAS name
        self.std_floor = std_floor
        self._fitness = self._fitness_function(self.fitness_name)
        self.extra = {c.name: parse_objective(c.name) for c in self.constraints}
        self.pick = parse_objective(pick_by) if pick_by is not None else None
        """``search.pick_by``: what ranks the winners instead of the fitness."""
        if self.pick is not None:
            self.extra.setdefault(self.pick.name, self.pick)
        self.needed = {o.name: o for o in [*self.objectives, *self.extra.values()]}
        for name in ("acc_1d", "avm", "std"):  # always reported
            self.needed.setdefault(name, Objective(name, default_direction(name), "predictor"))
        if self.fitness_name in ("acc_over_std",):
            self.needed.setdefault("std", Objective("std", "min", "predictor"))

    @property
    def uses_hardware(self) -> bool:
        return any(o.source == "hardware" for o in self.needed.values()) or self.fitness_name in COST_FIELDS

    def steering(self, multi_objective: bool) -> "ObjectiveSet":
        """What a search must compute while it runs: everything for a multi-objective strategy;
        otherwise the fitness and the constraints (the other objectives are only for the Pareto
        front and can be filled in afterwards: :meth:`fill`)."""
        if multi_objective:
            return self
        steer = copy.copy(self)
        keep = {c.name for c in self.constraints} | {"acc_1d", "avm", "std", self.fitness_name}
        steer.needed = {k: o for k, o in self.needed.items() if k in keep or o.source == "predictor"}
        return steer

    def fill(self, archs: Sequence[Any], values: list[dict[str, float]], costs: Sequence[dict[str, Any]]) -> None:
        """Add the objectives a steering set left out (hardware figures, custom functions) to ``values``."""
        if not archs:
            return
        columns: dict[str, np.ndarray] = {k: np.asarray([v[k] for v in values], dtype=np.float64) for k in values[0]}
        for name in COST_FIELDS:
            columns[name] = np.asarray([c[name] for c in costs], dtype=np.float64)
        for o in self.needed.values():
            if o.source not in SOURCES and o.name not in values[0]:
                from lightning_nas.classpath import resolve

                columns[o.name] = np.asarray(resolve(o.source)(archs, columns), dtype=np.float64).reshape(len(archs))
        for k, v in enumerate(values):
            for name in columns:
                if name not in v:
                    v[name] = float(columns[name][k])

    def _fitness_function(self, name: str) -> Callable[[Sequence[Any], dict[str, np.ndarray]], np.ndarray]:
        if name == "acc_over_std":
            if self.std_floor is None:
                raise UserError("fitness acc_over_std divides by the predicted std and needs a floor for it: this "
                                "predictor records no std_floor (a fit-surrogate directory does); set "
                                "search.std_floor (pp), e.g. the smallest 1-day std your campaign measured")
            if not self.std_floor > 0:
                raise UserError(f"search.std_floor must be > 0 (pp), got {self.std_floor}")
            floor = float(self.std_floor)
            return lambda archs, v: v["acc_1d"] / np.maximum(v["std"], floor)
        if "." in name and default_source(name) is None:
            from lightning_nas.classpath import resolve

            function = resolve(name)
            return lambda archs, v: np.asarray(function(archs, v), dtype=np.float64)
        objective = parse_objective(name) if not isinstance(name, Objective) else name
        self_name = objective.name
        if self_name == "acc_1d" and objective.sign > 0:
            return lambda archs, v: v[RANK_SCORE] if RANK_SCORE in v else v["acc_1d"]
        return lambda archs, v: objective.sign * v[self_name]

    def compute(self, archs: Sequence[Any], predictions: Mapping[str, Any], n_params: Sequence[int],
                costs: Optional[Sequence[dict[str, Any]]]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """``(values, fitness, feasible)`` over ``archs``."""
        n = len(archs)
        values: dict[str, np.ndarray] = {"n_params": np.asarray(n_params, dtype=np.float64)}
        for key, value in predictions.items():
            array = np.asarray(value, dtype=np.float64).reshape(-1)
            if len(array) != n:
                raise UserError(f"the predictor returned {len(array)} values of {key!r} for {n} architectures")
            values[key] = array
        for name in PREDICTOR_OUTPUTS:
            if name not in values:
                raise UserError(f"the predictor returned no {name!r} (it must return acc_1d, avm and std)")
        if costs is not None:
            for name in COST_FIELDS:
                values[name] = np.asarray([c[name] for c in costs], dtype=np.float64)
        for o in self.needed.values():
            if o.source not in SOURCES:
                from lightning_nas.classpath import resolve

                values[o.name] = np.asarray(resolve(o.source)(archs, values), dtype=np.float64).reshape(n)
            elif o.name not in values:
                hint = ("; a fit-surrogate directory fitted before prediction intervals has none: refit it with "
                        "fit-surrogate" if o.name in INTERVAL_OUTPUTS else "")
                raise UserError(f"objective {o.name!r}: the predictor returned no such output "
                                f"(it returned {', '.join(sorted(predictions))}){hint}")
        fitness = np.asarray(self._fitness(archs, values), dtype=np.float64).reshape(n)
        feasible = np.ones(n, dtype=bool)
        for c in self.constraints:
            feasible &= c.satisfied(values[c.name])
        feasible &= ~np.isnan(fitness)
        return values, fitness, feasible

    def oriented(self, values: Mapping[str, float]) -> list[float]:
        """The objectives of one individual as "lower is better" numbers (for Pareto sorting)."""
        return [-o.sign * float(values[o.name]) for o in self.objectives]

    def fitness_description(self, ranked: bool = False) -> str:
        """What the fitness is; ``ranked``: the predictor returned :data:`RANK_SCORE`."""
        if self.fitness_name == "acc_over_std":
            return f"acc_1d / max(std, {self.std_floor:g})"
        o = default_source(self.fitness_name) and parse_objective(self.fitness_name)
        if o and o.name == "acc_1d" and o.sign > 0 and ranked:
            return "acc_1d ranker score: orders acc_1d without its ties at the top"
        if o:
            return f"{'' if o.sign > 0 else '-'}{o.name}" + (f", {UNITS[o.name]}" if UNITS.get(o.name) else "")
        return self.fitness_name

    def oriented_of(self, ind: Any) -> list[float]:
        return self.oriented(ind.values)

    def describe(self) -> str:
        return ", ".join(f"{o.direction} {o.name}" for o in self.objectives)


def names(objectives: Iterable[Objective]) -> list[str]:
    return [o.name for o in objectives]

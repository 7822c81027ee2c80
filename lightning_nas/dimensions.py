"""One dimension of the search space: its domain and every way the code reads it.

A :class:`Dimension` is a finite, ordered set of ``choices`` plus how the rest of the code uses
it: validation (types are strict: an integer field refuses ``16.0`` and ``True``), the number it
contributes to the feature vector, the distance one mutation step covers (``scale``), its
neighbours (what a mutation may change it to), how a stage added by a mutation sets it, and how
it is written in :meth:`~lightning_nas.space.Architecture.describe`. The table of the space's
dimensions is in :mod:`lightning_nas.space`; sampling, features, mutations and every search
strategy read it (as optuna samplers read distributions). Pure Python, no project imports.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional


def _allowed(choices: tuple) -> str:
    """The allowed values of ``choices`` as an error message shows them."""
    first = choices[0]
    if isinstance(first, bool):
        return "true or false"
    if isinstance(first, str):
        return " or ".join(choices)
    if isinstance(first, int):
        if list(choices) == list(range(first, first + len(choices))):
            return f"integers {first}..{choices[-1]}"
        return "integers " + ", ".join(map(str, choices))
    step = choices[1] - first
    return f"{first}..{choices[-1]} in steps of {step}"


@dataclass(frozen=True)
class Dimension:
    """A field of the space (e.g. ``R``, the residual blocks of a stage) and how it is read."""

    name: str
    choices: tuple
    """The domain, in order (neighbours are adjacent in it; sampling splits [0, 1) evenly over it)."""
    default: Any
    """The value a record or a file leaves out."""
    scale: float
    """About one mutation step of the field in feature units (distances: crowding, landscapes)."""
    short: Callable[[Any], str]
    """The field in :meth:`~lightning_nas.space.Architecture.describe`, e.g. ``w1.5``."""
    feature: Literal["value", "index"] = "value"
    """Its feature-vector entry: the value as a number, or its position in ``choices``."""
    step: Literal["adjacent", "other"] = "adjacent"
    """A mutation moves it one step up or down (``adjacent``) or to any other choice (``other``)."""
    new_stage: Literal["copy", "first", "draw"] = "copy"
    """(Stage fields) a stage added by a mutation copies the last stage's value, takes the first
    choice or draws one."""
    allowed: str = ""
    """The allowed values in an error message; empty = derived from ``choices``."""

    def __post_init__(self) -> None:
        if not self.allowed:
            object.__setattr__(self, "allowed", _allowed(self.choices))

    @property
    def kind(self) -> type:
        return type(self.choices[0])

    @property
    def int_range(self) -> Optional[tuple[int, int]]:
        """``(low, high)`` when the choices are consecutive integers (an ordinal range), else ``None``."""
        first = self.choices[0]
        if self.kind is int and list(self.choices) == list(range(first, first + len(self.choices))):
            return first, self.choices[-1]
        return None

    def coerce(self, value: Any) -> Any:
        """An integer given for a float field is that float (2 and 2.0 are the same widen factor)."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def valid(self, value: Any) -> bool:
        """Of the field's type (a bool is not an integer) and one of its choices."""
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            return False
        return value in self.choices

    def index(self, value: Any) -> int:
        return self.choices.index(value)

    def encode(self, value: Any) -> float:
        """The field's entry of the feature vector."""
        return float(self.index(value) if self.feature == "index" else value)

    def pick(self, x: float) -> Any:
        """The choice of the stratum of [0, 1) that ``x`` falls in (sampling)."""
        return self.choices[min(int(x * len(self.choices)), len(self.choices) - 1)]

    def neighbour(self, value: Any, rng: random.Random) -> Any:
        """A value one mutation away, drawn with ``rng`` (``None`` if there is none). A single other
        choice is taken without a draw, so the random stream only moves when there is a choice."""
        if self.step == "other":
            others = [c for c in self.choices if c != value]
            return others[0] if len(others) == 1 else rng.choice(others)
        i = self.index(value)
        options = [j for j in (i - 1, i + 1) if 0 <= j < len(self.choices)]
        return self.choices[rng.choice(options)] if options else None

    def for_new_stage(self, last: Any, rng: random.Random) -> Any:
        """The value of a stage a mutation appends after a stage with ``last``."""
        if self.new_stage == "first":
            return self.choices[0]
        return rng.choice(self.choices) if self.new_stage == "draw" else last

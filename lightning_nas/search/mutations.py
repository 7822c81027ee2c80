"""Mutations: each is one small, valid change of one architecture (never a resample).

Every function takes an architecture and a ``random.Random`` and returns the mutated
architecture, or ``None`` when the change is impossible (e.g. removing the only stage). They are
made from the table of the space (:mod:`lightning_nas.space`): a field's mutation moves it to a
neighbour (:meth:`~lightning_nas.dimensions.Dimension.neighbour`; of one stage, drawn at random,
for a stage field), the depth ``M`` grows (a new last stage, :meth:`~lightning_nas.dimensions.Dimension.for_new_stage`)
or shrinks, and the groups are :data:`~lightning_nas.space.MUTATION_GROUPS`.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable, Optional

from lightning_nas.dimensions import Dimension
from lightning_nas.space import GLOBAL_DIMS, MAX_STAGES, MUTATION_GROUPS, STAGE_DIMS, Architecture, Stage

Mutation = Callable[[Architecture, random.Random], Optional[Architecture]]


def _with_stage(arch: Architecture, i: int, stage: Stage) -> Architecture:
    stages = list(arch.stages)
    stages[i] = stage
    return replace(arch, stages=tuple(stages))


# -- depth ----------------------------------------------------------------------------
def add_stage(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    """A new last stage, each field as its dimension says (copied from the last stage, the first
    choice, or drawn)."""
    if arch.M >= MAX_STAGES:
        return None
    last = arch.stages[-1]
    new = Stage(**{d.name: d.for_new_stage(getattr(last, d.name), rng) for d in STAGE_DIMS})
    return replace(arch, stages=arch.stages + (new,))


def remove_stage(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    return replace(arch, stages=arch.stages[:-1]) if arch.M > 1 else None


# -- one field ------------------------------------------------------------------------
def _global_step(dim: Dimension) -> Mutation:
    def mutation(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
        value = dim.neighbour(getattr(arch, dim.name), rng)
        return None if value is None else replace(arch, **{dim.name: value})

    mutation.__name__ = f"change_{dim.name}"
    mutation.__doc__ = f"Move ``{dim.name}`` to a neighbouring value."
    return mutation


def _stage_step(dim: Dimension) -> Mutation:
    def mutation(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
        i = rng.randrange(arch.M)
        value = dim.neighbour(getattr(arch.stages[i], dim.name), rng)
        return None if value is None else _with_stage(arch, i, replace(arch.stages[i], **{dim.name: value}))

    mutation.__name__ = f"change_{dim.name}"
    mutation.__doc__ = f"Move ``{dim.name}`` of one random stage to a neighbouring value."
    return mutation


FIELD_MUTATIONS: dict[str, Mutation] = {
    **{d.name: _global_step(d) for d in GLOBAL_DIMS}, **{d.name: _stage_step(d) for d in STAGE_DIMS}}
"""The one-field mutation of every field of the table (by field name)."""


def _group(names: tuple[str, ...]) -> tuple[Mutation, ...]:
    out: list[Mutation] = []
    for name in names:
        out += [add_stage, remove_stage] if name == "M" else [FIELD_MUTATIONS[name]]
    return tuple(out)


GROUPS: dict[str, tuple[Mutation, ...]] = {group: _group(names) for group, names in MUTATION_GROUPS.items()}


def mutate(arch: Architecture, rng: random.Random, probs: dict[str, float], tries: int = 20) -> Architecture:
    """Apply each mutation group with its probability (at least one change); a group's
    mutation that is impossible for this architecture is redrawn."""
    for _ in range(tries):
        child = arch
        groups = [g for g, p in probs.items() if rng.random() < p] or [rng.choice(list(probs))]
        for group in groups:
            for _ in range(tries):
                out = rng.choice(GROUPS[group])(child, rng)
                if out is not None:
                    child = out
                    break
        if child != arch:
            return child
    return arch


def neighbours(arch: Architecture, rng: random.Random, draws: int = 12) -> list[Architecture]:
    """The one-mutation neighbourhood of ``arch`` (every mutation drawn ``draws`` times, distinct
    results in a seeded order): what a local search around an incumbent tries."""
    found: dict[Architecture, None] = {}
    for group in GROUPS.values():
        for mutation in group:
            for _ in range(draws):
                child = mutation(arch, rng)
                if child is not None and child != arch:
                    found.setdefault(child)
    out = list(found)
    rng.shuffle(out)
    return out

"""Mutations: each is one small, valid change of one architecture (never a resample).

Every function takes an architecture and a ``random.Random`` and returns the mutated
architecture, or ``None`` when the change is impossible (e.g. removing the only stage).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable, Optional

from lightning_nas.space import (
    B_RANGE, CONVBLOCKS, KERNEL0, MAX_STAGES, OUT_CHANNEL0, R_RANGE, WIDENFACTS, Architecture, Stage)

Mutation = Callable[[Architecture, random.Random], Optional[Architecture]]


def _with_stage(arch: Architecture, i: int, stage: Stage) -> Architecture:
    stages = list(arch.stages)
    stages[i] = stage
    return replace(arch, stages=tuple(stages))


def _neighbour(choices: tuple, value, rng: random.Random):
    """A neighbouring value of ``value`` in ``choices`` (one step up or down)."""
    i = choices.index(value)
    options = [j for j in (i - 1, i + 1) if 0 <= j < len(choices)]
    return choices[rng.choice(options)] if options else None


# -- depth ----------------------------------------------------------------------------
def add_stage(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    if arch.M >= MAX_STAGES:
        return None
    last = arch.stages[-1]
    new = Stage(R=1, B=last.B, convblock=last.convblock, widenfact=rng.choice(WIDENFACTS), skip=last.skip)
    return replace(arch, stages=arch.stages + (new,))


def remove_stage(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    return replace(arch, stages=arch.stages[:-1]) if arch.M > 1 else None


def change_depth(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    """Add or remove one residual block of one stage."""
    i = rng.randrange(arch.M)
    r = _neighbour(tuple(range(R_RANGE[0], R_RANGE[1] + 1)), arch.stages[i].R, rng)
    return _with_stage(arch, i, replace(arch.stages[i], R=r))


def change_convblock(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    i = rng.randrange(arch.M)
    other = next(c for c in CONVBLOCKS if c != arch.stages[i].convblock)
    return _with_stage(arch, i, replace(arch.stages[i], convblock=other))


# -- width ----------------------------------------------------------------------------
def change_branches(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    i = rng.randrange(arch.M)
    b = _neighbour(tuple(range(B_RANGE[0], B_RANGE[1] + 1)), arch.stages[i].B, rng)
    return _with_stage(arch, i, replace(arch.stages[i], B=b))


def change_out_channel0(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    return replace(arch, out_channel0=_neighbour(OUT_CHANNEL0, arch.out_channel0, rng))


def change_widenfact(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    i = rng.randrange(arch.M)
    return _with_stage(arch, i, replace(arch.stages[i], widenfact=_neighbour(WIDENFACTS, arch.stages[i].widenfact, rng)))


# -- other ----------------------------------------------------------------------------
def toggle_skip(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    i = rng.randrange(arch.M)
    return _with_stage(arch, i, replace(arch.stages[i], skip=not arch.stages[i].skip))


def change_kernel0(arch: Architecture, rng: random.Random) -> Optional[Architecture]:
    return replace(arch, kernel0=rng.choice([k for k in KERNEL0 if k != arch.kernel0]))


GROUPS: dict[str, tuple[Mutation, ...]] = {
    "depth": (add_stage, remove_stage, change_depth, change_convblock),
    "width": (change_branches, change_out_channel0, change_widenfact),
    "other": (toggle_skip, change_kernel0),
}


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

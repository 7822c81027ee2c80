"""Multi-objective evolution: pymoo's NSGA-II (non-dominated sorting and crowding distance) over
``search.objectives``, through pymoo's ask/tell interface.

The genome is fixed-length: the choice index of every field of the space (stem channels, kernel,
number of stages, and all five stages' fields; stages beyond the number are ignored), crossed
over with simulated binary crossover and mutated with polynomial mutation, both rounded to
integers (pymoo's integer-variable recipe); pymoo removes duplicate genomes, and an offspring
that decodes to an architecture evaluated before is replaced by a mutation of it. Constraints go to
pymoo as inequality constraints (constrained domination: feasible before infeasible);
architectures over max_params are told as infeasible without a prediction."""

from __future__ import annotations

import random
from typing import Any, Optional

import numpy as np

from lightning_nas.search.core import SearchContext, Strategy
from lightning_nas.search.mutations import mutate
from lightning_nas.space import Architecture, SearchSpace


def upper_bounds(space: SearchSpace) -> np.ndarray:
    """The largest choice index of every gene."""
    return np.asarray([len(g.dim.choices) - 1 for g in space.genome], dtype=float)


def decode(space: SearchSpace, x: np.ndarray) -> Architecture:
    """The architecture of a real-valued genome (rounded and clipped to choice indices)."""
    return space.decode([int(v) for v in np.clip(np.rint(x), 0, upper_bounds(space))])


def encode(space: SearchSpace, arch: Architecture, rng: np.random.Generator) -> np.ndarray:
    """The genome of ``arch`` (fields of absent stages drawn at random)."""
    x = space.encode(arch)
    return np.asarray([int(rng.integers(len(g.dim.choices))) if v is None else v for g, v in zip(space.genome, x)],
                      dtype=float)


class NSGA2(Strategy):
    multi_objective = True

    def __init__(self, crossover_prob: float = 0.9, crossover_eta: float = 15.0, mutation_eta: float = 20.0,
                 seed: Optional[int] = None) -> None:
        """
        Args:
            crossover_prob: probability that two parents are crossed (simulated binary crossover).
            crossover_eta: the crossover's distribution index: higher keeps children nearer their parents.
            mutation_eta: the polynomial mutation's distribution index: higher makes smaller steps.
            seed: this strategy's seed; null: ``search.seed``.
        """
        if not 0 <= crossover_prob <= 1:
            raise ValueError(f"crossover_prob must be in [0, 1], got {crossover_prob}")
        self.crossover_prob, self.crossover_eta, self.mutation_eta, self.seed = (
            crossover_prob, crossover_eta, mutation_eta, seed)

    def setup(self, ctx: SearchContext) -> None:
        super().setup(ctx)
        from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
        from pymoo.core.problem import Problem
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair
        from pymoo.core.population import Population

        self.rng = np.random.default_rng(self.run_seed)
        self.py_rng = random.Random(self.run_seed)
        n_obj = len(ctx.objectives)
        self.space = ctx.space
        self.problem = Problem(n_var=len(ctx.space.genome), n_obj=n_obj, n_ieq_constr=1, xl=0,
                               xu=upper_bounds(ctx.space), vtype=int)
        initial = ctx.initial(ctx.cfg.population, "lhs", self.run_seed)
        self.algorithm = PymooNSGA2(
            pop_size=ctx.cfg.population, n_offsprings=ctx.cfg.batch,
            sampling=Population.new("X", np.asarray([encode(ctx.space, a, self.rng) for a in initial])),
            crossover=SBX(prob=self.crossover_prob, eta=self.crossover_eta, vtype=float, repair=RoundingRepair()),
            mutation=PM(eta=self.mutation_eta, vtype=float, repair=RoundingRepair()),
            eliminate_duplicates=True)
        self.algorithm.setup(self.problem, seed=self.run_seed, verbose=False)
        self.pending: Any = None

    def population(self) -> list:
        return []

    def ask(self) -> list[Architecture]:
        """pymoo's offspring; one that decodes to an architecture evaluated before (a converged
        population mostly breeds those) is replaced by a mutation of it (the space's own operator)."""
        self.pending = self.algorithm.ask()
        genomes = self.pending.get("X").copy()
        archs, seen = [], set()
        for k, x in enumerate(genomes):
            arch = decode(self.space, x)
            for _ in range(20):
                if arch not in seen and not self.ctx.is_evaluated(arch):
                    break
                arch = mutate(arch, self.py_rng, {"width": 0.8, "depth": 0.8, "other": 0.6})
            genomes[k] = encode(self.space, arch, self.rng)
            seen.add(arch)
            archs.append(arch)
        self.pending.set("X", genomes)
        return archs

    def tell(self, archs, individuals) -> None:
        from pymoo.core.evaluator import Evaluator
        from pymoo.problems.static import StaticProblem

        worst = np.full(len(self.ctx.objectives), 1e12)
        F, G = [], []
        for arch, ind in zip(archs, individuals):
            if ind is None:  # over max_params: never predicted
                F.append(worst)
                G.append([self.ctx.params(arch) / self.ctx.cfg.max_params - 1.0 + 1e-9])
            else:
                F.append(np.nan_to_num(np.asarray(self.ctx.oriented(ind)), nan=1e12, posinf=1e12, neginf=-1e12))
                G.append([0.0 if ind.feasible else 1.0])
        Evaluator().eval(StaticProblem(self.problem, F=np.asarray(F), G=np.asarray(G)), self.pending)
        self.algorithm.tell(infills=self.pending)

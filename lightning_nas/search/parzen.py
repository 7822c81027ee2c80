"""Parzen estimators over groups of genes of a :class:`~lightning_nas.space.SearchSpace`, in numpy
(the density models of the TPE strategy, :mod:`lightning_nas.search.strategies.tpe`).

An estimator is a mixture of one kernel per observation (a genome's choice indices) plus a
uniform prior component, as in optuna's TPE (Watanabe, 2023: weights, prior weight 1, the
``gamma`` split): a field whose mutations step to adjacent choices (an ordinal one, per the
space's table) gets a discretised Gaussian kernel over its choice index, any other field a
categorical kernel (the observed choice plus a uniform share). ``multivariate`` estimators use
one product kernel per observation (the fields of a group jointly), univariate ones a mixture per
field. Sampling and densities are vectorised over a whole batch of candidates.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from lightning_nas.dimensions import Dimension

PRIOR_WEIGHT = 1.0


def gamma(n: int) -> int:
    """How many of ``n`` observations form the good group (optuna's default)."""
    return min(int(math.ceil(0.1 * n)), 25)


def recency_weights(n: int) -> np.ndarray:
    """Weights of ``n`` observations, oldest first: the last 25 weigh 1, older ones a ramp down
    to 1/n (optuna's default)."""
    if n < 25:
        return np.ones(n)
    return np.concatenate([np.linspace(1.0 / n, 1.0, num=n - 25), np.ones(25)])


def kernel_table(dim: Dimension, n_kernels: int, n_fields: int) -> np.ndarray:
    """``log K[c, x]``: the kernel centred on choice ``c`` at choice ``x`` (rows sum to 1)."""
    k = len(dim.choices)
    if dim.step == "adjacent" and k > 2:  # ordinal: a Gaussian over the index, Scott-like bandwidth
        sigma = max(0.5, 0.2 * (k - 1) * n_kernels ** (-1.0 / (n_fields + 4)))
        index = np.arange(k)
        table = -0.5 * ((index[None, :] - index[:, None]) / sigma) ** 2
        return table - np.log(np.exp(table).sum(axis=1, keepdims=True))
    table = np.full((k, k), PRIOR_WEIGHT / n_kernels) + np.eye(k)  # the choice plus a uniform share
    return np.log(table / table.sum(axis=1, keepdims=True))


def _sample_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of ``probs`` (each row a distribution)."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), probs.shape[1] - 1)


class ParzenEstimator:
    """The density of observations ``centers`` (choice indices, one row per observation, one
    column per field of ``dims``) with ``weights``, plus a uniform prior component."""

    def __init__(self, dims: Sequence[Dimension], centers: np.ndarray, weights: np.ndarray,
                 multivariate: bool = True) -> None:
        self.dims, self.multivariate = list(dims), multivariate
        self.centers = np.asarray(centers, dtype=np.int64).reshape(len(weights), len(self.dims))
        n = len(weights)
        total = float(np.sum(weights)) + PRIOR_WEIGHT
        self.log_w = np.log(np.asarray(weights, dtype=float) / total) if n else np.empty(0)
        self.log_prior = math.log(PRIOR_WEIGHT / total)
        self.tables = [kernel_table(d, n + 1, len(self.dims) if multivariate else 1) for d in self.dims]
        self.sizes = [len(d.choices) for d in self.dims]
        if not multivariate:  # per field: the mixture's probability of each choice
            w = np.exp(self.log_w)
            self.marginals = [np.exp(self.log_prior) / k + (np.bincount(self.centers[:, j], weights=w, minlength=k)
                                                           @ np.exp(t))
                              for j, (k, t) in enumerate(zip(self.sizes, self.tables))]

    def sample(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """``m`` draws (choice indices, ``m`` x fields)."""
        if not self.multivariate:
            return np.stack([rng.choice(k, size=m, p=p / p.sum()) for k, p in zip(self.sizes, self.marginals)], axis=1)
        probs = np.exp(np.append(self.log_w, self.log_prior))
        comp = rng.choice(len(probs), size=m, p=probs / probs.sum())
        prior = comp == len(self.log_w)
        out = np.empty((m, len(self.dims)), dtype=np.int64)
        for j, (k, table) in enumerate(zip(self.sizes, self.tables)):
            rows = np.full((m, k), 1.0 / k)
            if (~prior).any():
                rows[~prior] = np.exp(table[self.centers[comp[~prior], j]])
            out[:, j] = _sample_rows(rows, rng)
        return out

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        """The log density of each row of ``x`` (choice indices, ``m`` x fields)."""
        x = np.asarray(x, dtype=np.int64)
        if not self.multivariate:
            return sum(np.log(p[x[:, j]]) for j, p in enumerate(self.marginals))
        prior = np.full((len(x), 1), self.log_prior - sum(math.log(k) for k in self.sizes))
        if not len(self.log_w):
            return prior[:, 0]
        scores = np.broadcast_to(self.log_w, (len(x), len(self.log_w))).copy()
        for j, table in enumerate(self.tables):
            scores += table[self.centers[:, j][None, :], x[:, j][:, None]]
        both = np.concatenate([scores, prior], axis=1)
        top = both.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(both - top).sum(axis=1, keepdims=True)))[:, 0]

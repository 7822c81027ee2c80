"""XGBoost surrogates: the pairwise ranker for 1-day accuracy, regressors for AVM and std, and the
calibration of ranker scores onto accuracy. (The MLP ranker is in :mod:`.mlp`: it needs torch.)"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np


FIT_THREADS = 1
"""XGBoost threads for fitting. A campaign's few hundred rows fit in seconds on one thread; with two
threads on a busy 2-core machine XGBoost's OpenMP workers waited on each other and one
``fit-surrogate`` ran for over 10 minutes instead of 25 s."""


@contextlib.contextmanager
def fit_threads() -> Iterator[None]:
    """Every numeric library on :data:`FIT_THREADS` threads while the context runs: BLAS and OpenMP
    pools (scikit-learn's t-SNE of the coverage plot) through threadpoolctl, and torch (the MLP
    ranker). With their default of one thread per core, the coverage plot's t-SNE of 111 points took
    52 s instead of 2.2 s beside one busy process on a 2-core machine."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(FIT_THREADS)
    try:
        with threadpool_limits(limits=FIT_THREADS):
            yield
    finally:
        torch.set_num_threads(before)


@dataclass
class XGBParams:
    n_estimators: int = 300
    max_depth: int = 3
    learning_rate: float = 0.05
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    pairs_per_sample: int = 8
    """Ranker only: pairs drawn per architecture (``lambdarank_pair_method="mean"``). XGBoost's
    default for rank:pairwise (top-k pairs) ranked much worse on the former 300-architecture digits campaign (held-out
    Kendall tau 0.44 vs 0.73)."""

    def trees(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "pairs_per_sample"}


def fit_xgb_ranker(x: np.ndarray, y: np.ndarray, params: XGBParams, seed: int):
    """``rank:pairwise`` ranker over one query group (all architectures are comparable)."""
    import xgboost as xgb

    model = xgb.XGBRanker(objective="rank:pairwise", lambdarank_pair_method="mean",
                          lambdarank_num_pair_per_sample=params.pairs_per_sample, random_state=seed,
                          n_jobs=FIT_THREADS,
                          **params.trees())
    model.fit(x, y, qid=np.zeros(len(y), dtype=np.int64))
    return model


def fit_xgb_regressor(x: np.ndarray, y: np.ndarray, params: XGBParams, seed: int):
    import xgboost as xgb

    model = xgb.XGBRegressor(objective="reg:squarederror", random_state=seed, n_jobs=FIT_THREADS, **params.trees())
    model.fit(x, y)
    return model


def fit_learned_classifier(x: np.ndarray, learned: np.ndarray, params: XGBParams, seed: int):
    """``binary:logistic`` classifier of whether an architecture learned (see
    :func:`lightning_nas.surrogate.data.learned_mask`); ``None`` when the rows are all of one kind
    (the predictor then answers that share for every architecture)."""
    import xgboost as xgb

    if learned.all() or not learned.any():
        return None
    model = xgb.XGBClassifier(objective="binary:logistic", random_state=seed, n_jobs=FIT_THREADS,
                              **params.trees())
    model.fit(x, learned.astype(np.int64))
    return model


def calibration(score: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """A monotone map from ranker scores onto the target's scale: the k-th smallest training
    score maps to the k-th smallest training target (quantile matching). It keeps the
    ranker's order and stays within the measured range (no linear extrapolation)."""
    return {"scores": np.sort(score).astype(float).tolist(), "values": np.sort(y).astype(float).tolist()}


def calibrate(score: np.ndarray, cal: dict[str, list[float]]) -> np.ndarray:
    s, v = np.asarray(cal["scores"]), np.asarray(cal["values"])
    inside = np.clip(score, s[0], s[-1])
    # Beyond the training scores the value is capped; a tiny slope keeps the ranker's order.
    return np.interp(inside, s, v) + 1e-3 * (score - inside)


def fit_lgbm_regressor(x: np.ndarray, y: np.ndarray, params: XGBParams, seed: int):
    """LightGBM gradient-boosted regressor with the same tree budget: a second, independently
    maintained learner for the comparison table (for acc_1d its predictions rank). One thread and
    LightGBM's deterministic mode: the same rows give the same model on any machine."""
    import lightgbm as lgb

    model = lgb.LGBMRegressor(n_estimators=params.n_estimators, max_depth=params.max_depth,
                              learning_rate=params.learning_rate, subsample=params.subsample, subsample_freq=1,
                              colsample_bytree=params.colsample_bytree, num_leaves=2 ** params.max_depth,
                              min_child_samples=5, random_state=seed, n_jobs=1, deterministic=True,
                              force_row_wise=True, verbose=-1)
    model.fit(x, y)
    return model

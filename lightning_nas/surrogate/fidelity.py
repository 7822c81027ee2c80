"""Predictors of full-budget labels that use cheap information (issue 31's item 4).

* :class:`FidelityInputModel`: one model over rows of every fidelity, with the fidelity as an input
  (the budget fractions it trained with); it predicts at the full budget. For ``acc_1d`` it is a
  pairwise ranker whose pairs are drawn within each fidelity (an architecture is compared with
  others trained the same way), for other labels a regressor.
* :class:`StackedModel`: a model of the cheap label from the architecture, whose prediction is one
  more input of the model of the full label (fitted on the full rows): the cheap rows teach which
  architectures train well, the few full rows how that carries over to the full budget.
* :func:`curve_features` + :class:`CurveExtrapolator`: the final accuracy from a cheap run's learning
  curve and drift metrics (what successive halving can promote by); it needs the cheap training of
  the architecture it predicts, so it ranks trained candidates, not a search's proposals.
* :func:`noise_robustness_proxy`: a training-free proxy of analog robustness: a briefly (digitally)
  trained network's accuracy and how much of it survives weights perturbed like programming noise.

The study in ``benchmarks/fidelity_study.py`` scores each by Kendall tau against the full-budget
labels of the shipped digits campaign.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from lightning_nas.surrogate.models import XGBParams, fit_xgb_regressor

FIDELITY_FEATURES = ("epochs", "train_fraction", "n_reps")
"""How a row's fidelity enters a model: each as a fraction of the full budget's."""


def fidelity_vector(fidelity: Optional[Mapping[str, Any]], full: Mapping[str, Any]) -> list[float]:
    """A row's fidelity (its budget overrides; ``None``: the full budget) as fractions of the full
    budget's ``epochs``, ``train_fraction`` and ``n_reps`` (all 1.0 at the full budget)."""
    fidelity = fidelity or {}
    out = []
    for name in FIDELITY_FEATURES:
        whole = full.get(name)
        whole = 1.0 if whole is None else float(whole)
        part = fidelity.get(name)
        out.append(1.0 if part is None else float(part) / whole)
    return out


def _fit_ranker(x: np.ndarray, y: np.ndarray, groups: np.ndarray, params: XGBParams, seed: int) -> Any:
    """XGBoost's pairwise ranker with pairs drawn within each group (the project's ranker settings)."""
    import xgboost as xgb

    from lightning_nas.surrogate.models import FIT_THREADS

    order = np.argsort(groups, kind="stable")  # XGBoost wants each query group contiguous
    model = xgb.XGBRanker(objective="rank:pairwise", lambdarank_pair_method="mean",
                          lambdarank_num_pair_per_sample=params.pairs_per_sample, random_state=seed,
                          n_jobs=FIT_THREADS, **params.trees())
    model.fit(x[order], y[order], qid=groups[order])
    return model


class FidelityInputModel:
    """One model over cheap and full rows, the fidelity among its inputs; predicts at the full
    budget. ``rank=True`` (for accuracies): a ranker, pairs within each fidelity; else a regressor."""

    def __init__(self, rank: bool, params: Optional[XGBParams] = None, seed: int = 0) -> None:
        self.rank, self.params, self.seed = rank, params or XGBParams(), seed

    def fit(self, x: np.ndarray, fidelity: np.ndarray, y: np.ndarray) -> "FidelityInputModel":
        """``x``: architecture (and hardware) features; ``fidelity``: :func:`fidelity_vector` rows."""
        inputs = np.hstack([x, fidelity]).astype(np.float32)
        if self.rank:
            _, groups = np.unique(fidelity, axis=0, return_inverse=True)
            self.model = _fit_ranker(inputs, y, groups.ravel().astype(np.int64), self.params, self.seed)
        else:
            self.model = fit_xgb_regressor(inputs, y, self.params, self.seed)
        self.n_fidelity = fidelity.shape[1]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores (ranker) or values (regressor) at the full budget."""
        full = np.ones((len(x), self.n_fidelity), dtype=np.float32)
        return self.model.predict(np.hstack([x, full]).astype(np.float32))


class StackedModel:
    """The full label from the architecture and a model of its cheap label: ``g`` (regressor,
    fitted on the cheap rows) predicts the cheap label, ``h`` (ranker or regressor, fitted on the
    full rows) the full one from the features and ``g``'s prediction."""

    def __init__(self, rank: bool, params: Optional[XGBParams] = None, seed: int = 0) -> None:
        self.rank, self.params, self.seed = rank, params or XGBParams(), seed

    def fit(self, x_cheap: np.ndarray, y_cheap: np.ndarray, x_full: np.ndarray, y_full: np.ndarray) -> "StackedModel":
        self.g = fit_xgb_regressor(x_cheap.astype(np.float32), y_cheap, self.params, self.seed)
        inputs = self._inputs(x_full)
        if self.rank:
            self.h = _fit_ranker(inputs, y_full, np.zeros(len(y_full), dtype=np.int64), self.params, self.seed)
        else:
            self.h = fit_xgb_regressor(inputs, y_full, self.params, self.seed)
        return self

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([x, self.g.predict(x.astype(np.float32))[:, None]]).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.h.predict(self._inputs(x))


CURVE_METRICS = ("acc_1s", "acc_1d", "acc_30d", "avm", "acc_1d_std")


def curve_features(row: Mapping[str, Any], epochs: int) -> list[float]:
    """A cheap row's learning curve and drift results as numbers: validation accuracy and training
    loss of each of its first ``epochs`` epochs (the last one repeated if it has fewer; NaN without
    a curve), their last-epoch slope, and its drift metrics."""
    curves = row.get("curves") or {}
    out: list[float] = []
    for name in ("val_acc", "train_loss"):
        values = [v if v is not None else np.nan for v in curves.get(name, [])] or [np.nan]
        values = (values + [values[-1]] * epochs)[:epochs]
        out += [float(v) for v in values]
        out.append(float(values[-1] - values[-2]) if epochs > 1 else 0.0)
    metrics = row.get("metrics") or {}
    return out + [float(metrics.get(m, np.nan)) for m in CURVE_METRICS]


class CurveExtrapolator:
    """The full-budget label from the architecture and its cheap run (:func:`curve_features`):
    learning-curve extrapolation learned from architectures trained both ways (a regressor, as in
    Baker et al. 2017, "Accelerating neural architecture search using performance prediction")."""

    def __init__(self, params: Optional[XGBParams] = None, seed: int = 0) -> None:
        self.params, self.seed = params or XGBParams(), seed

    def fit(self, x: np.ndarray, curves: np.ndarray, y_full: np.ndarray) -> "CurveExtrapolator":
        self.model = fit_xgb_regressor(np.hstack([x, curves]).astype(np.float32), y_full, self.params, self.seed)
        return self

    def predict(self, x: np.ndarray, curves: np.ndarray) -> np.ndarray:
        return self.model.predict(np.hstack([x, curves]).astype(np.float32))


def noise_robustness_proxy(archs: Sequence[Any], input_shape: Sequence[int], num_classes: int,
                           train: tuple[Any, Any], test: tuple[Any, Any], *, steps: int = 160,
                           batch_size: int = 64, noise: float = 0.08, draws: int = 4,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """Per architecture: ``clean``, the test accuracy (%) of the digital network after ``steps``
    SGD steps (a trainability proxy), and ``kept``, the share of it that survives weights
    perturbed by Gaussian noise of ``noise`` x each layer's largest weight (programming noise's
    scale in the pcm_hwa preset), averaged over ``draws`` (an analog-robustness proxy). No analog
    training: about 0.5 s for ResNet-20 on digits on one CPU thread (160 steps: about 90 % clean)."""
    import torch

    from lightning_nas.network import build_network

    x_train, y_train = (torch.as_tensor(t) for t in train)
    x_test, y_test = (torch.as_tensor(t) for t in test)
    clean, kept = [], []
    for arch in archs:
        torch.manual_seed(seed)
        net = build_network(arch, input_shape, num_classes)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        gen = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(steps):
            idx = torch.randint(len(x_train), (batch_size,), generator=gen)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x_train[idx]), y_train[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            base = (net(x_test).argmax(1) == y_test).float().mean().item() * 100
            weights = [m.weight for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
            saved = [w.detach().clone() for w in weights]
            noisy = []
            for _ in range(draws):
                for w, s in zip(weights, saved):
                    w.copy_(s + noise * s.abs().max() * torch.randn(s.shape, generator=gen))
                noisy.append((net(x_test).argmax(1) == y_test).float().mean().item() * 100)
            for w, s in zip(weights, saved):
                w.copy_(s)
        clean.append(base)
        kept.append(float(np.mean(noisy)) / base if base > 0 else 0.0)
    return {"clean": np.asarray(clean), "kept": np.asarray(kept)}

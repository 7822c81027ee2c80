"""Fit the surrogates on a campaign's rows and measure them on held-out rows (and k folds)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lightning_nas.errors import UserError
from lightning_nas.files import staged_directory
from lightning_nas.surrogate.ceiling import label_ceiling, with_ratios
from lightning_nas.surrogate.data import (LEARNED_METRIC, TrainingSet, comparison_targets, default_learned_threshold,
                                         inputs, learned_mask, training_set)
from lightning_nas.surrogate.mlp import MLPParams, fit_mlp_ranker
from lightning_nas.surrogate.models import (XGBParams, calibrate, calibration, fit_learned_classifier,
                                           fit_lgbm_regressor, fit_xgb_ranker, fit_xgb_regressor)
from lightning_nas.surrogate.predictor import SurrogatePredictor
from lightning_nas.surrogate.report import (campaign_summary, classification_quality, comparison_table, coverage_plot,
                                           markdown_report, ranking_quality, regression_quality, scatter)

# Scatter plots of a fit: predictor key -> (title, x label); "mlp" is compared with acc_1d.
PLOTS = {"acc_1d": ("XGBoost ranker (calibrated): 1-day acc %", "predicted"),
         "avm": ("XGBoost regressor: AVM (pp)", "predicted"),
         "std": ("XGBoost regressor: 1-day std (pp)", "predicted"),
         "mlp": ("MLP ranker score vs 1-day acc %", "MLP score")}


SCATTER_METRICS = {"acc_1d": "xgb_acc_1d_ranker", "avm": "xgb_avm_regressor", "std": "xgb_std_regressor",
                   "mlp": "mlp_acc_1d_ranker"}


SPLIT = "sha256 of seed and architecture id"
"""How :func:`split` holds rows out (recorded in ``metadata.json``: surrogates fitted before it have none)."""


def split(keys: Sequence[str], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices, both sorted: the ``round(test_fraction x n)`` rows (for n >= 2 at
    least one, at most n - 1) whose hash of ``seed`` and key (the architecture id) is smallest are held out.
    A row's hash does not depend on the other rows, so a campaign that grows keeps its held-out rows
    held out (bar the few new rows that take places at the boundary) and the metrics at two sizes
    are measured on nearly nested test sets; a seeded permutation re-drew the whole split with every
    new row (held-out ranker tau 0.82 at 807 rows, 0.77 at 810)."""
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}")
    digests = [hashlib.sha256(f"{seed}:{key}".encode()).hexdigest() for key in keys]
    order = sorted(range(len(keys)), key=lambda i: (digests[i], i))
    n_test = min(max(1, int(round(test_fraction * len(keys)))), len(keys) - 1)
    return np.sort(np.asarray(order[n_test:], dtype=np.int64)), np.sort(np.asarray(order[:n_test], dtype=np.int64))


def check_kfold(k: int, n_rows: int) -> None:
    if k and not 2 <= k <= n_rows:
        raise UserError(f"kfold must be 0 (off) or 2..{n_rows}, got {k}")


MIN_LEARNED_ROWS = 5
"""Fewest learned training rows the AVM and std regressors are fitted on."""


def fit_and_score(x: np.ndarray, y: dict[str, np.ndarray], learned: np.ndarray, train: np.ndarray, test: np.ndarray,
                  xgb: XGBParams, mlp: MLPParams, seed: int,
                  not_learned: Optional[np.ndarray] = None) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """Fit every model on ``train``; return (models, metrics on ``test``, test predictions).

    The acc_1d rankers and the learned classifier use every row; the AVM and std models only the
    rows that learned (``learned``), and are scored on the held-out rows that learned. The
    classifier also trains on ``not_learned`` (inputs of architectures whose training diverged:
    they have no metrics, and did not learn). Test predictions are ``{key: (row indices, values)}``."""
    fit_l, test_l = train[learned[train]], test[learned[test]]
    if len(fit_l) < MIN_LEARNED_ROWS:
        raise UserError(f"only {len(fit_l)} training rows learned (acc_1s >= learned_threshold); the AVM and std "
                        f"models need at least {MIN_LEARNED_ROWS}: lower learned_threshold (0 = every row) or "
                        "give the campaign a budget in which more architectures learn")
    if len(test_l) < 2:
        raise UserError(f"only {len(test_l)} held-out rows learned (acc_1s >= learned_threshold); the AVM and std "
                        "models can't be scored on fewer than 2: raise test_fraction, use fewer kfold folds, or lower "
                        "learned_threshold (0 = every row)")
    ranker = fit_xgb_ranker(x[train], y["acc_1d"][train], xgb, seed)
    cal = calibration(ranker.predict(x[train]), y["acc_1d"][train])
    extra = not_learned if not_learned is not None else np.empty((0, x.shape[1]), dtype=x.dtype)
    classifier_y = np.concatenate([learned[train], np.zeros(len(extra), dtype=bool)])
    classifier = fit_learned_classifier(np.concatenate([x[train], extra]), classifier_y, xgb, seed)
    models = {"acc_1d": ranker, "avm": fit_xgb_regressor(x[fit_l], y["avm"][fit_l], xgb, seed),
              "std": fit_xgb_regressor(x[fit_l], y["std"][fit_l], xgb, seed), "learned": classifier,
              "learned_share": float(classifier_y.mean()),
              "mlp": fit_mlp_ranker(x[train], y["acc_1d"][train], mlp, seed), "calibration": cal}
    pred = {"acc_1d": (test, calibrate(ranker.predict(x[test]), cal)),
            "avm": (test_l, models["avm"].predict(x[test_l])), "std": (test_l, models["std"].predict(x[test_l])),
            "mlp": (test, models["mlp"].score(x[test]))}
    p_learned = (classifier.predict_proba(x[test])[:, 1] if classifier is not None
                 else np.full(len(test), models["learned_share"]))
    lgbm_acc = fit_lgbm_regressor(x[train], y["acc_1d"][train], xgb, seed).predict(x[test])
    lgbm = {key: fit_lgbm_regressor(x[fit_l], y[key][fit_l], xgb, seed).predict(x[test_l]) for key in ("avm", "std")}
    metrics = {"xgb_acc_1d_ranker": {**ranking_quality(pred["acc_1d"][1], y["acc_1d"][test]),
                                     "mae_calibrated": float(np.mean(np.abs(pred["acc_1d"][1] - y["acc_1d"][test])))},
               "xgb_avm_regressor": regression_quality(pred["avm"][1], y["avm"][test_l]),
               "xgb_std_regressor": regression_quality(pred["std"][1], y["std"][test_l]),
               "xgb_learned_classifier": classification_quality(p_learned, learned[test]),
               "mlp_acc_1d_ranker": ranking_quality(pred["mlp"][1], y["acc_1d"][test]),
               "lgbm_acc_1d_regressor": ranking_quality(lgbm_acc, y["acc_1d"][test]),
               "lgbm_avm_regressor": regression_quality(lgbm["avm"], y["avm"][test_l]),
               "lgbm_std_regressor": regression_quality(lgbm["std"], y["std"][test_l])}
    if "acc_1s" in y and "acc_30d" in y:  # AVM as the difference of two predicted accuracies, for comparison
        ends = {k: fit_xgb_regressor(x[fit_l], y[k][fit_l], xgb, seed).predict(x[test_l]) for k in ("acc_1s", "acc_30d")}
        metrics["xgb_avm_from_acc_1s_minus_acc_30d"] = regression_quality(ends["acc_1s"] - ends["acc_30d"],
                                                                          y["avm"][test_l])
    if "drift_slope" in y:  # AVM from the predicted slope of accuracy over log time (every drift time), for comparison
        slope = fit_xgb_regressor(x[fit_l], y["drift_slope"][fit_l], xgb, seed).predict(x[test_l])
        metrics["xgb_avm_from_drift_slope"] = regression_quality(slope * y["avm_per_slope"][test_l], y["avm"][test_l])
    return models, metrics, pred


def kfold_metrics(x, y, learned: np.ndarray, k: int, xgb: XGBParams, mlp: MLPParams, seed: int,
                  not_learned: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Mean and std of every metric over ``k`` seeded folds (``not_learned``: see :func:`fit_and_score`)."""
    check_kfold(k, len(x))
    folds = np.array_split(np.random.default_rng(seed).permutation(len(x)), k)
    per_fold = []
    for i in range(k):
        test = np.sort(folds[i])
        train = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i]))
        per_fold.append(fit_and_score(x, y, learned, train, test, xgb, mlp, seed, not_learned)[1])
    out: dict[str, Any] = {}
    for model in per_fold[0]:
        out[model] = {}
        for m in per_fold[0][model]:
            values = [f[model][m] for f in per_fold if f[model][m] is not None]  # None: undefined in that fold
            out[model][m] = ({"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": len(values)}
                             if values else None)
    return out


@dataclass
class SurrogateFit:
    """A fitted surrogate with its quality report and the held-out predictions behind it."""

    predictor: SurrogatePredictor
    report: dict[str, Any]
    data: TrainingSet
    rows: Sequence[dict[str, Any]]
    test: np.ndarray
    test_predictions: dict[str, tuple[np.ndarray, np.ndarray]]
    """Held-out predictions by key: (row indices, values); AVM and std on the rows that learned."""

    def uniform_features(self, n: int = 600) -> np.ndarray:
        """Feature vectors of uniform samples of the space under the campaign's largest parameter
        count (for the task the surrogate records), for the coverage plot."""
        from lightning_nas.space import sample

        task = self.predictor.meta.get("task") or {}
        shape = tuple(task.get("input_shape") or (3, 32, 32))
        classes = int(task.get("num_classes") or 10)
        budget = max((int(r.get("n_params") or 0) for r in self.rows), default=0) or None
        archs = sample(min(n, max(2 * len(self.data.x), 100)), seed=self.predictor.meta.get("seed", 0),
                       method="uniform", max_params=budget, in_shape=shape,
                       n_classes=classes)
        return np.asarray([a.feature_vector() for a in archs], dtype=np.float64)

    def save(self, directory: str | Path) -> list[Path]:
        """The predictor's files, ``report.json``, ``report.md`` and the held-out scatter plots, written as one set
        (staged, then moved into place: a failure leaves a previous surrogate there whole)."""
        directory = Path(directory)
        with staged_directory(directory) as stage:
            written = self.predictor.save(stage)
            (stage / "report.json").write_text(json.dumps(self.report, indent=2))
            (stage / "report.md").write_text(markdown_report(self.report, self.predictor.meta["std_floor"],
                                                             self.predictor.meta.get("data", "")))
            written += [stage / "report.json", stage / "report.md"]
            holdout = self.report["holdout"]
            for key, (title, xlabel) in PLOTS.items():
                rows, predicted = self.test_predictions[key]
                true = self.data.y["acc_1d" if key == "mlp" else key][rows]
                model = SCATTER_METRICS[key]
                shown = {k: holdout[model][k] for k in ("kendall_tau", "r2") if k in holdout[model]}
                if key in ("avm", "std"):
                    title += " (learned)"
                written.append(scatter(np.asarray(predicted), true, title,
                                       stage / f"scatter_{key}.png", xlabel, shown))
            from lightning_nas.space import feature_names

            architecture = np.asarray(self.data.x)[:, : len(feature_names())]  # without the hardware features
            written.append(coverage_plot(architecture, self.uniform_features(), stage / "coverage.png"))
        return [directory / p.name for p in written]


STD_FLOOR_PERCENTILE = 5


def std_floor(measured: np.ndarray) -> float:
    """The floor of predicted 1-day stds (pp): the 5th percentile of the stds the campaign measured
    over its programmings (at least 0.01 pp). A regressor can predict less, even below zero; the
    labels never showed it, so :meth:`SurrogatePredictor.predict` clips there and ``acc_over_std``
    divides by no less."""
    values = np.asarray(measured, dtype=np.float64)
    values = values[np.isfinite(values)]
    return round(max(float(np.percentile(values, STD_FLOOR_PERCENTILE)) if len(values) else 0.0, 0.01), 4)


def resolve_learned_threshold(threshold: Optional[float], task: Optional[dict[str, Any]]) -> float:
    """``threshold`` as given, or the default for the task's number of classes."""
    if threshold is not None:
        if not 0 <= threshold < 100:
            raise UserError(f"learned_threshold must be in [0, 100) (% accuracy at 1 s; 0 = every row), got {threshold}")
        return float(threshold)
    classes = (task or {}).get("num_classes")
    if not classes:
        raise UserError("the campaign records no task (number of classes) to derive learned_threshold from; give "
                        "learned_threshold (the % accuracy at 1 s an architecture must reach to count as learned; 0 = every row)")
    return default_learned_threshold(int(classes))


def fit_surrogate(rows: Sequence[dict[str, Any]], *, test_fraction: float = 0.2, kfold: int = 0, seed: int = 0,
                  xgb: XGBParams = XGBParams(), mlp: MLPParams = MLPParams(), source: str = "",
                  task: Optional[dict[str, Any]] = None, replicates: Sequence[dict[str, Any]] = (),
                  learned_threshold: Optional[float] = None, diverged: Sequence[dict[str, Any]] = ()) -> SurrogateFit:
    """Fit the surrogates on ``rows`` (status ``ok``) with a seeded held-out split by architecture id
    (:func:`split`; and k folds);
    with the campaign's ``replicates`` the report states the label-noise ceiling.
    ``task`` (:class:`lightning_nas.task.TaskInfo` as a dict) is recorded in the metadata.
    ``learned_threshold`` (% at 1 s, reached or exceeded; ``None``: :func:`default_learned_threshold` of the task's
    classes; 0: every row) says which rows learned: the AVM and std models use only those, and a
    classifier predicts the probability of learning. ``diverged`` (the campaign's rows whose training
    diverged) add to the classifier's training as architectures that did not learn."""
    data = training_set(rows)
    check_kfold(kfold, len(data.x))
    threshold = resolve_learned_threshold(learned_threshold, task)
    learned = learned_mask(rows, threshold)
    y = {**data.y, **comparison_targets(rows)}
    train, test = split([a.id for a in data.archs], test_fraction, seed)
    not_learned = inputs(diverged)[1] if len(diverged) else None
    models, metrics, pred = fit_and_score(data.x, y, learned, train, test, xgb, mlp, seed, not_learned)
    report: dict[str, Any] = {"holdout": metrics, "n_train": int(len(train)), "n_test": int(len(test)),
                              "learned": {"threshold": threshold, "metric": LEARNED_METRIC, "rows": int(learned.sum()),
                                          "share": float(learned.mean()),
                                          "n_train": int(learned[train].sum()), "n_test": int(learned[test].sum()),
                                          "diverged_rows": len(diverged)},
                              "campaign": campaign_summary(rows)}
    if kfold:
        report["kfold"] = kfold_metrics(data.x, y, learned, kfold, xgb, mlp, seed, not_learned)
        report["kfold_k"] = kfold
    analogs = sorted({json.dumps(r["analog"], sort_keys=True) for r in rows})
    meta = {"std_floor": std_floor(data.y["std"][learned]), "learned": {
                "threshold": threshold, "metric": LEARNED_METRIC,
                "constant": None if models["learned"] is not None else models["learned_share"]},
            "rows": len(rows), "n_train": int(len(train)), "data": source, "seed": seed, "split": SPLIT,
            "analog": json.loads(analogs[0]), "analog_configs": len(analogs),
            "acc_1d_calibration": models["calibration"], "xgb": asdict(xgb), "mlp": asdict(mlp),
            "mlp_hidden": mlp.hidden, "metrics": report, "task": task}
    predictor = SurrogatePredictor({k: models[k] for k in ("acc_1d", "avm", "std", "learned")}, meta,
                                   mlp=models["mlp"])
    report["comparison"] = comparison_table(report["holdout"], report.get("kfold"))
    report["ceiling"] = with_ratios(label_ceiling(rows, replicates, learned=set(
        r["arch_id"] for r, ok in zip(rows, learned) if ok), threshold=threshold), report["holdout"])
    return SurrogateFit(predictor, report, data, rows, test, pred)

"""Fit the surrogates on a campaign's rows and measure them on held-out rows (and k folds)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lightning_nas.errors import UserError
from lightning_nas.files import staged_directory
from lightning_nas.surrogate.ceiling import label_ceiling, with_ratios
from lightning_nas.surrogate.data import TrainingSet, training_set
from lightning_nas.surrogate.mlp import MLPParams, fit_mlp_ranker
from lightning_nas.surrogate.models import (XGBParams, calibrate, calibration, fit_lgbm_regressor, fit_xgb_ranker,
                                           fit_xgb_regressor)
from lightning_nas.surrogate.predictor import SurrogatePredictor
from lightning_nas.surrogate.report import (comparison_table, coverage_plot, ranking_quality, regression_quality,
                                           scatter)

# Scatter plots of a fit: predictor key -> (title, x label); "mlp" is compared with acc_1d.
PLOTS = {"acc_1d": ("XGBoost ranker (calibrated): 1-day acc %", "predicted"),
         "avm": ("XGBoost regressor: AVM (pp)", "predicted"),
         "std": ("XGBoost regressor: 1-day std (pp)", "predicted"),
         "mlp": ("MLP ranker score vs 1-day acc %", "MLP score")}


SCATTER_METRICS = {"acc_1d": "xgb_acc_1d_ranker", "avm": "xgb_avm_regressor", "std": "xgb_std_regressor",
                   "mlp": "mlp_acc_1d_ranker"}


def split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, test) row indices, both sorted."""
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def check_kfold(k: int, n_rows: int) -> None:
    if k and not 2 <= k <= n_rows:
        raise UserError(f"kfold must be 0 (off) or 2..{n_rows}, got {k}")


def fit_and_score(x: np.ndarray, y: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray,
                  xgb: XGBParams, mlp: MLPParams, seed: int) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """Fit every model on ``train``; return (models, metrics on ``test``, test predictions)."""
    ranker = fit_xgb_ranker(x[train], y["acc_1d"][train], xgb, seed)
    cal = calibration(ranker.predict(x[train]), y["acc_1d"][train])
    models = {"acc_1d": ranker, "avm": fit_xgb_regressor(x[train], y["avm"][train], xgb, seed),
              "std": fit_xgb_regressor(x[train], y["std"][train], xgb, seed),
              "mlp": fit_mlp_ranker(x[train], y["acc_1d"][train], mlp, seed), "calibration": cal}
    pred = {"acc_1d": calibrate(ranker.predict(x[test]), cal), "avm": models["avm"].predict(x[test]),
            "std": models["std"].predict(x[test]), "mlp": models["mlp"].score(x[test])}
    lgbm = {key: fit_lgbm_regressor(x[train], y[key][train], xgb, seed).predict(x[test]) for key in y}
    metrics = {"xgb_acc_1d_ranker": {**ranking_quality(pred["acc_1d"], y["acc_1d"][test]),
                                     "mae_calibrated": float(np.mean(np.abs(pred["acc_1d"] - y["acc_1d"][test])))},
               "xgb_avm_regressor": regression_quality(pred["avm"], y["avm"][test]),
               "xgb_std_regressor": regression_quality(pred["std"], y["std"][test]),
               "mlp_acc_1d_ranker": ranking_quality(pred["mlp"], y["acc_1d"][test]),
               "lgbm_acc_1d_regressor": ranking_quality(lgbm["acc_1d"], y["acc_1d"][test]),
               "lgbm_avm_regressor": regression_quality(lgbm["avm"], y["avm"][test]),
               "lgbm_std_regressor": regression_quality(lgbm["std"], y["std"][test])}
    return models, metrics, pred


def kfold_metrics(x, y, k: int, xgb: XGBParams, mlp: MLPParams, seed: int) -> dict[str, Any]:
    """Mean and std of every metric over ``k`` seeded folds."""
    check_kfold(k, len(x))
    folds = np.array_split(np.random.default_rng(seed).permutation(len(x)), k)
    per_fold = []
    for i in range(k):
        test = np.sort(folds[i])
        train = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i]))
        per_fold.append(fit_and_score(x, y, train, test, xgb, mlp, seed)[1])
    out: dict[str, Any] = {}
    for model in per_fold[0]:
        out[model] = {m: {"mean": float(np.mean([f[model][m] for f in per_fold])),
                          "std": float(np.std([f[model][m] for f in per_fold]))} for m in per_fold[0][model]}
    return out


@dataclass
class SurrogateFit:
    """A fitted surrogate with its quality report and the held-out predictions behind it."""

    predictor: SurrogatePredictor
    report: dict[str, Any]
    data: TrainingSet
    rows: Sequence[dict[str, Any]]
    test: np.ndarray
    test_predictions: dict[str, np.ndarray]

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
        """The predictor's files, ``report.json`` and the held-out scatter plots, written as one set
        (staged, then moved into place: a failure leaves a previous surrogate there whole)."""
        directory = Path(directory)
        with staged_directory(directory) as stage:
            written = self.predictor.save(stage)
            (stage / "report.json").write_text(json.dumps(self.report, indent=2))
            written.append(stage / "report.json")
            holdout = self.report["holdout"]
            for key, (title, xlabel) in PLOTS.items():
                true = self.data.y["acc_1d" if key == "mlp" else key][self.test]
                model = SCATTER_METRICS[key]
                shown = {k: holdout[model][k] for k in ("kendall_tau", "r2") if k in holdout[model]}
                written.append(scatter(np.asarray(self.test_predictions[key]), true, title,
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


def fit_surrogate(rows: Sequence[dict[str, Any]], *, test_fraction: float = 0.2, kfold: int = 0, seed: int = 0,
                  xgb: XGBParams = XGBParams(), mlp: MLPParams = MLPParams(), source: str = "",
                  task: Optional[dict[str, Any]] = None, replicates: Sequence[dict[str, Any]] = ()) -> SurrogateFit:
    """Fit the surrogates on ``rows`` (status ``ok``) with a seeded held-out split (and k folds);
    with the campaign's ``replicates`` the report states the label-noise ceiling.
    ``task`` (:class:`lightning_nas.task.TaskInfo` as a dict) is recorded in the metadata."""
    data = training_set(rows)
    check_kfold(kfold, len(data.x))
    train, test = split(len(data.x), test_fraction, seed)
    models, metrics, pred = fit_and_score(data.x, data.y, train, test, xgb, mlp, seed)
    report: dict[str, Any] = {"holdout": metrics, "n_train": int(len(train)), "n_test": int(len(test))}
    if kfold:
        report["kfold"] = kfold_metrics(data.x, data.y, kfold, xgb, mlp, seed)
    analogs = sorted({json.dumps(r["analog"], sort_keys=True) for r in rows})
    meta = {"std_floor": std_floor(data.y["std"]), "rows": len(rows), "n_train": int(len(train)), "data": source, "seed": seed,
            "analog": json.loads(analogs[0]), "analog_configs": len(analogs),
            "acc_1d_calibration": models["calibration"], "xgb": asdict(xgb), "mlp": asdict(mlp),
            "mlp_hidden": mlp.hidden, "metrics": report, "task": task}
    predictor = SurrogatePredictor({k: models[k] for k in ("acc_1d", "avm", "std")}, meta, mlp=models["mlp"])
    report["comparison"] = comparison_table(report["holdout"], report.get("kfold"))
    report["ceiling"] = with_ratios(label_ceiling(rows, replicates), report["holdout"])
    return SurrogateFit(predictor, report, data, rows, test, pred)

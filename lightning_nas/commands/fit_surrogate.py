"""``python -m lightning_nas fit-surrogate --config configs/fit_surrogate_digits.yaml``.

Trains the surrogates on a campaign's rows and reports their quality on held-out rows:
an XGBoost ``rank:pairwise`` ranker for 1-day accuracy (Kendall tau, Spearman rho),
XGBoost regressors for AVM and 1-day std (MAE, R^2), and for comparison an MLP ranker
trained with the pairwise hinge loss. Writes the models (xgboost JSON), metadata, a
report and scatter plots of predicted vs measured.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.errors import UserError
from lightning_nas.space import SPACE_VERSION
from lightning_nas.surrogate.data import all_feature_names, load_rows, matrix
from lightning_nas.surrogate.models import (
    MLPParams, XGBParams, calibrate, calibration, fit_mlp_ranker, fit_xgb_ranker, fit_xgb_regressor)
from lightning_nas.surrogate.predictor import META_FILE, MODEL_FILES
from lightning_nas.surrogate.report import ranking_quality, regression_quality, scatter


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m lightning_nas fit-surrogate", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--data", type=str, required=True, help="Campaign store (.sqlite) or its CSV export.")
    parser.add_argument("--out_dir", type=str, default="runs/surrogate")
    parser.add_argument("--test_fraction", type=float, default=0.2)
    parser.add_argument("--kfold", type=int, default=0, help="Also report k-fold cross-validation (k >= 2).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_dataclass_arguments(XGBParams, "xgb")
    parser.add_dataclass_arguments(MLPParams, "mlp")
    return parser


def split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


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
    metrics = {"xgb_acc_1d_ranker": {**ranking_quality(pred["acc_1d"], y["acc_1d"][test]),
                                     "mae_calibrated": float(np.mean(np.abs(pred["acc_1d"] - y["acc_1d"][test])))},
               "xgb_avm_regressor": regression_quality(pred["avm"], y["avm"][test]),
               "xgb_std_regressor": regression_quality(pred["std"], y["std"][test]),
               "mlp_acc_1d_ranker": ranking_quality(pred["mlp"], y["acc_1d"][test])}
    return models, metrics, pred


def kfold_metrics(x, y, k: int, xgb: XGBParams, mlp: MLPParams, seed: int) -> dict[str, Any]:
    if k < 2 or k > len(x):
        raise UserError(f"kfold must be 0 (off) or 2..{len(x)}, got {k}")
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


def format_report(metrics: dict[str, Any]) -> str:
    lines = [f"{'model':<22}{'metric':<16}{'value':>8}"]
    for model, values in metrics.items():
        for name, value in values.items():
            lines.append(f"{model:<22}{name:<16}{value:8.3f}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    cfg = build_parser().parse_args(argv)
    xgb, mlp = XGBParams(**cfg.xgb.as_dict()), MLPParams(**cfg.mlp.as_dict())
    rows = load_rows(cfg.data)
    x, y, _ = matrix(rows)
    if cfg.kfold and not 2 <= cfg.kfold <= len(x):  # before anything is written
        raise UserError(f"kfold must be 0 (off) or 2..{len(x)}, got {cfg.kfold}")
    analogs = {json.dumps(r["analog"], sort_keys=True) for r in rows}
    train, test = split(len(x), cfg.test_fraction, cfg.seed)
    models, metrics, pred = fit_and_score(x, y, train, test, xgb, mlp, cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for key, name in MODEL_FILES.items():
        models[key].save_model(out / name)
    import torch

    torch.save(models["mlp"].state_dict(), out / "mlp_ranker.pt")
    report: dict[str, Any] = {"holdout": metrics, "n_train": int(len(train)), "n_test": int(len(test))}
    if cfg.kfold:
        report["kfold"] = kfold_metrics(x, y, cfg.kfold, xgb, mlp, cfg.seed)
    meta = {"feature_names": all_feature_names(), "space_version": SPACE_VERSION, "rows": len(rows),
            "n_train": int(len(train)), "data": str(cfg.data), "seed": cfg.seed,
            "analog": json.loads(sorted(analogs)[0]), "analog_configs": len(analogs),
            "acc_1d_calibration": models["calibration"], "xgb": asdict(xgb), "mlp": asdict(mlp),
            "mlp_hidden": mlp.hidden, "metrics": report}
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plots = [("acc_1d", "XGBoost ranker (calibrated): 1-day acc %", "predicted"),
             ("avm", "XGBoost regressor: AVM (pp)", "predicted"),
             ("std", "XGBoost regressor: 1-day std (pp)", "predicted"),
             ("mlp", "MLP ranker score vs 1-day acc %", "MLP score")]
    for key, title, xlabel in plots:
        true = y["acc_1d" if key == "mlp" else key][test]
        scatter(np.asarray(pred[key]), true, title, out / f"scatter_{key}.png", xlabel)
    print(f"surrogate trained on {len(train)} rows, evaluated on {len(test)} held-out rows:", file=sys.stderr)
    print(format_report(metrics))
    if cfg.kfold:
        print(f"\n{cfg.kfold}-fold cross-validation (mean):")
        print(format_report({m: {k: v["mean"] for k, v in d.items()} for m, d in report["kfold"].items()}))
    print(f"\nsaved to {out}/ ({', '.join(MODEL_FILES.values())}, {META_FILE}, report.json, scatter_*.png)",
          file=sys.stderr)

"""Quality of surrogate predictions: rank correlations, errors and scatter plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from scipy.stats import kendalltau, spearmanr

from lightning_nas.surrogate.specs import MODELS, TARGET_ORDER


def ranking_quality(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Kendall tau and Spearman rho; NaN (shown "n/a") when either side is constant or has fewer
    than 2 values, where neither is defined (scipy would warn and answer NaN)."""
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return {"kendall_tau": float("nan"), "spearman_rho": float("nan")}
    tau = kendalltau(pred, true).statistic
    rho = spearmanr(pred, true).statistic
    return {"kendall_tau": float(tau), "spearman_rho": float(rho)}


def regression_quality(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    err = pred - true
    ss_res = float(np.sum(err ** 2))
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    return {"mae": float(np.mean(np.abs(err))), "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            **ranking_quality(pred, true)}


def classification_quality(p: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Predicted probabilities against 0/1 outcomes: ROC AUC (None with one class only), accuracy at
    0.5, Brier score and the outcomes' base rate."""
    from sklearn.metrics import roc_auc_score

    t = np.asarray(true, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    auc = float(roc_auc_score(t, p)) if 0 < t.sum() < len(t) else None  # undefined with one class (JSON null)
    return {"auc": auc, "accuracy": float(np.mean((p >= 0.5) == t)), "brier": float(np.mean((p - t) ** 2)),
            "base_rate": float(t.mean())}


def scatter(pred: np.ndarray, true: np.ndarray, title: str, path: Path, xlabel: str = "predicted",
            metrics: Optional[dict[str, float]] = None) -> Path:
    """Held-out predictions against measurements, with the metrics, the number of held-out rows
    and (for predictions on the measured scale) the dashed identity line explained on the figure."""
    from lightning_nas.figures import new_figure

    fig, ax = new_figure(figsize=(4.5, 4.5))
    ax.scatter(pred, true, s=12, alpha=0.7)
    if xlabel == "predicted":
        lo, hi = float(min(pred.min(), true.min())), float(max(pred.max(), true.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="dashed: predicted = measured")
        ax.legend(fontsize=7, loc="lower right")
    text = [f"{len(true)} held-out rows"] + [f"{name} {value:.2f}" for name, value in (metrics or {}).items()]
    ax.text(0.03, 0.97, "\n".join(text), transform=ax.transAxes, va="top", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "lightgrey"})
    ax.set_xlabel(xlabel)
    ax.set_ylabel("measured")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def metric_text(value: Any, digits: int, missing: str = "n/a") -> str:
    """A reported metric as text: held out ``0.81``, k-fold ``0.81 +- 0.01`` (mean +- std over the
    folds), ``missing`` where it is undefined (None or NaN)."""
    if isinstance(value, dict):
        mean, std = value.get("mean"), value.get("std")
        return missing if mean is None or not np.isfinite(mean) else f"{mean:.{digits}f} +- {std:.{digits}f}"
    return missing if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def comparison_table(holdout: dict[str, Any], kfold: Optional[dict[str, Any]] = None) -> str:
    """Markdown: per learner (the models of :data:`MODELS` by ``compared_as``), Kendall tau for acc_1d
    and tau / R^2 for AVM and std, held out (and the k-fold mean +- std); a learner none of whose
    models the rows could make is left out."""
    learners: dict[str, dict[str, str]] = {}
    for spec in MODELS:
        if spec.compared_as:
            learners.setdefault(spec.compared_as, {})[spec.target] = spec.name

    def cell(metrics: dict[str, Any], model: Optional[str], keys: tuple[str, ...]) -> str:
        if model is None or model not in metrics:
            return "-"
        return " / ".join(metric_text(metrics[model].get(k), 2) for k in keys)

    lines = ["| learner | acc_1d tau | AVM tau / R^2 (learned rows) | std tau / R^2 (learned rows) |",
             "|---|---|---|---|"]
    for source, metrics in (("held out", holdout), ("k-fold", kfold)):
        if not metrics:
            continue
        for name, models in learners.items():
            if not any(model in metrics for model in models.values()):
                continue  # a comparison the rows could not make
            lines.append(f"| {name} ({source}) | {cell(metrics, models.get('acc_1d'), ('kendall_tau',))} | "
                         f"{cell(metrics, models.get('avm'), ('kendall_tau', 'r2'))} | "
                         f"{cell(metrics, models.get('std'), ('kendall_tau', 'r2'))} |")
    return "\n".join(lines)


def coverage_plot(campaign: np.ndarray, uniform: np.ndarray, path: Path, seed: int = 0) -> Path:
    """t-SNE (scikit-learn) of the campaign's architectures among uniform samples of the space, as in
    the AnalogNAS paper: whether the campaign covers the space the search explores."""
    from lightning_nas.figures import new_figure
    from sklearn.manifold import TSNE

    both = np.vstack([uniform, campaign])
    scaled = (both - both.mean(axis=0)) / np.where(both.std(axis=0) > 0, both.std(axis=0), 1.0)
    embedded = TSNE(n_components=2, perplexity=min(30.0, (len(both) - 1) / 3), init="pca", random_state=seed,
                    n_jobs=1).fit_transform(scaled)
    fig, ax = new_figure(figsize=(5, 4.5))
    ax.scatter(*embedded[: len(uniform)].T, s=5, c="lightgrey", label=f"uniform samples of the space ({len(uniform)})")
    ax.scatter(*embedded[len(uniform):].T, s=8, c="tab:blue", label=f"campaign architectures ({len(campaign)})")
    ax.set_title("t-SNE of architecture features", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def campaign_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the surrogate was fitted on (its ``ok`` rows): their 1-day accuracy quantiles and their
    training and evaluation time (sum of ``wall_s`` over the rows that record it; a CSV export has none)."""
    acc = np.asarray([r["metrics"]["acc_1d"] for r in rows], dtype=np.float64)
    walls = [float(r["wall_s"]) for r in rows if isinstance(r.get("wall_s"), (int, float))]
    quantiles = np.percentile(acc, [0, 25, 50, 75, 100]) if len(acc) else [float("nan")] * 5
    return {"ok_rows": len(rows), "acc_1d": dict(zip(("min", "q1", "median", "q3", "max"), map(float, quantiles))),
            "wall_s_sum": float(sum(walls)), "wall_s_rows": len(walls)}


def models_table(holdout: dict[str, Any], kfold: Optional[dict[str, Any]] = None) -> str:
    """Markdown: the held-out metrics (and the k-fold mean +- std) of the models of :data:`MODELS`
    with a ``label``, by what they predict (:data:`TARGET_ORDER`)."""
    def cell(metrics: dict[str, Any], columns) -> str:
        texts = [(label, metric_text(metrics.get(key), 3), unit) for key, label, unit in columns]
        return ", ".join(f"{label} {text}{unit if text != 'n/a' else ''}" for label, text, unit in texts)

    lines = ["| model | held out |" + (" k-fold (mean +- std) |" if kfold else ""),
             "|---|---|" + ("---|" if kfold else "")]
    for spec in sorted((m for m in MODELS if m.label), key=lambda m: TARGET_ORDER.index(m.target)):
        if spec.name not in holdout:
            continue
        row = f"| {spec.label} | {cell(holdout[spec.name], spec.columns)} |"
        if kfold:
            row += f" {cell(kfold[spec.name], spec.columns) if spec.name in kfold else '-'} |"
        lines.append(row)
    return "\n".join(lines)


def markdown_report(report: dict[str, Any], std_floor: float, source: str) -> str:
    """``report.md``: the report's numbers to read or paste: the rows the surrogate was fitted on,
    each model held out and k-fold, the comparison of learners and the label-noise ceiling as
    Markdown tables, and the figures next to it."""
    from lightning_nas.surrogate.ceiling import format_ceiling

    learned, campaign = report["learned"], report["campaign"]
    rule = (f"learned (acc_1s >= {learned['threshold']:g} %)" if learned["threshold"] > 0
            else "learned (learned_threshold 0: every row counts)")
    a = campaign["acc_1d"]
    wall = ""
    if campaign["wall_s_rows"]:
        wall = (f"; training and evaluation took {campaign['wall_s_sum'] / 3600:.2f} h of worker time (sum of "
                f"`wall_s` over {campaign['wall_s_rows']} rows)")
    folds = f" and {report['kfold_k']}-fold cross-validation" if report.get("kfold") else ""
    lines = ["# Surrogate report", "", f"Data: `{source}`." if source else "Data: rows given in Python.", "",
             f"{campaign['ok_rows']} `ok` rows and {learned['diverged_rows']} `diverged` ones; {learned['rows']} of "
             f"the `ok` rows {rule}. 1-day accuracy of the `ok` rows: min {a['min']:.1f} %, quartiles "
             f"{a['q1']:.1f} / {a['median']:.1f} / {a['q3']:.1f} %, max {a['max']:.1f} %{wall}.", "",
             f"Held out: {report['n_test']} of {report['n_train'] + report['n_test']} rows{folds}; AVM and std "
             f"fitted on the {learned['n_train']} learned training rows and scored on the {learned['n_test']} "
             f"learned held-out rows. Predicted stds never go below the floor {std_floor:g} pp (5th percentile "
             "of the learned rows' 1-day stds).",
             *[f"\n**Warning:** {w}." for w in report.get("warnings") or []],
             "", "## Models", "", models_table(report["holdout"], report.get("kfold")),
             "", "## Comparison of learners", "", report["comparison"],
             "", "## Prediction intervals", "", intervals_table(report.get("intervals") or {}),
             "", "## Label-noise ceiling", "", format_ceiling(report.get("ceiling") or {}),
             "", "## Figures", "",
             "| coverage (t-SNE) | 1-day accuracy ranker | MLP ranker | AVM regressor | 1-day std regressor |",
             "|---|---|---|---|---|",
             "| ![coverage](coverage.png) | ![acc_1d](scatter_acc_1d.png) | ![mlp](scatter_mlp.png) "
             "| ![avm](scatter_avm.png) | ![std](scatter_std.png) |", ""]
    return "\n".join(lines)


def intervals_table(intervals: dict[str, Any]) -> str:
    """The prediction intervals (:mod:`lightning_nas.surrogate.intervals`) as a Markdown table."""
    if not intervals:
        return "None recorded."
    level = next(iter(intervals.values()))["level"]
    lines = [f"Nominal {level:.0%} intervals, Mondrian split-conformal on the held-out rows (by the prediction's "
             "level: bins split at `edges`, each with its residual offsets). Coverage and width measured on "
             "held-out rows the intervals were not calibrated on (two halves, each checked with the other's).", "",
             "The point prediction is recentred on its bin's median residual (`shift`); its mean absolute error "
             "on the other half, recentred and raw, is in the last column.", "",
             "| label | rows | bins split at | offsets (low, high; shift) per bin | measured coverage | mean width "
             "| MAE recentred / raw |", "|---|---|---|---|---|---|---|"]
    for target, c in intervals.items():
        shifts = c.get("shift", [float("nan")] * len(c["low"]))
        offsets = "; ".join(f"{lo:+.2f}, {hi:+.2f}; {sh:+.2f}" for lo, hi, sh in zip(c["low"], c["high"], shifts))
        edges = ", ".join(f"{e:.2f}" for e in c["edges"]) or "-"
        lines.append(f"| {target} | {c.get('rows', '')} | {edges} | {offsets} | {c.get('coverage', float('nan')):.3f} "
                     f"| {c.get('width', float('nan')):.2f} pp | {c.get('mae_recentred', float('nan')):.2f} / "
                     f"{c.get('mae_raw', float('nan')):.2f} pp |")
    return "\n".join(lines)

"""Quality of surrogate predictions: rank correlations, errors and scatter plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr


def ranking_quality(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    tau = kendalltau(pred, true).statistic
    rho = spearmanr(pred, true).statistic
    return {"kendall_tau": float(tau), "spearman_rho": float(rho)}


def regression_quality(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    err = pred - true
    ss_res = float(np.sum(err ** 2))
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    return {"mae": float(np.mean(np.abs(err))), "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            **ranking_quality(pred, true)}


def scatter(pred: np.ndarray, true: np.ndarray, title: str, path: Path, xlabel: str = "predicted") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.scatter(pred, true, s=12, alpha=0.7)
    if xlabel == "predicted":
        lo, hi = float(min(pred.min(), true.min())), float(max(pred.max(), true.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("measured")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def format_report(metrics: dict[str, dict[str, float]]) -> str:
    """A text table of ``{model: {metric: value}}``."""
    lines = [f"{'model':<22}{'metric':<16}{'value':>8}"]
    for model, values in metrics.items():
        for name, value in values.items():
            lines.append(f"{model:<22}{name:<16}{value:8.3f}")
    return "\n".join(lines)

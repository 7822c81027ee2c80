"""The label-noise ceiling of a surrogate: how well a campaign's labels agree with themselves.

A campaign's replicates (:class:`lightning_nas.campaign.campaign.Replicates`) train some of its
architectures again with other seeds. For each label the ceiling is what re-running the labelling
achieves: Kendall tau between the rows' labels and a replicate seed's labels of the same
architectures (mean over seeds), and for AVM and std the intraclass correlation ICC(1) of the
measurements of each architecture (one-way random effects: the share of the variance that is
between architectures). A surrogate's held-out tau can't be expected to beat the seed-to-seed
tau; the report shows both and their ratio.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from scipy.stats import kendalltau

from lightning_nas.surrogate.data import TARGETS
from lightning_nas.surrogate.report import metric_text
from lightning_nas.surrogate.specs import PREDICTOR_MODELS


def icc1(measurements: np.ndarray) -> float:
    """ICC(1) of an ``(architectures, measurements)`` array (NaN with fewer than 2 of either)."""
    m = np.asarray(measurements, dtype=np.float64)
    n, k = m.shape
    if n < 2 or k < 2:
        return float("nan")
    means = m.mean(axis=1)
    ms_between = k * np.sum((means - m.mean()) ** 2) / (n - 1)
    ms_within = np.sum((m - means[:, None]) ** 2) / (n * (k - 1))
    denominator = ms_between + (k - 1) * ms_within
    return float((ms_between - ms_within) / denominator) if denominator > 0 else float("nan")


def label_ceiling(rows: Sequence[dict[str, Any]], replicates: Sequence[dict[str, Any]],
                  learned: Optional[set[str]] = None, threshold: float = 0.0) -> dict[str, Any]:
    """Seed-to-seed Kendall tau (and ICC for AVM and std) of every label over the architectures
    that have ``ok`` rows and ``ok`` replicates for every replicate seed; ``{}`` without replicates.
    With ``learned`` (architecture ids), AVM and std are measured over those only (where the
    surrogate's AVM and std models are fitted and scored), and with ``threshold`` (the learned
    threshold, % at 1 s) only where every replicate learned too: a replicate seed that stayed at
    chance has an AVM and std of pure noise, which is trainability, not drift label noise."""
    main = {r["arch_id"]: r for r in rows if r.get("status") == "ok" and r.get("arch_id")}
    seeds = sorted({int(r["seed"]) for r in replicates if r.get("status") == "ok"})
    by_seed = {s: {r["arch_id"]: r for r in replicates if r.get("status") == "ok" and int(r["seed"]) == s}
               for s in seeds}
    archs = [a for a in main if all(a in by_seed[s] for s in seeds)]
    if not seeds or len(archs) < 3:
        return {}
    out: dict[str, Any] = {"architectures": len(archs), "seeds": seeds}
    for key, metric in TARGETS.items():
        among = archs if key == "acc_1d" or learned is None else [
            a for a in archs if a in learned and all(by_seed[s][a]["metrics"]["acc_1s"] >= threshold for s in seeds)]
        if len(among) < 3:
            continue
        first = np.asarray([main[a]["metrics"][metric] for a in among], dtype=np.float64)
        others = [np.asarray([by_seed[s][a]["metrics"][metric] for a in among], dtype=np.float64) for s in seeds]
        taus = [float(kendalltau(first, o).statistic) for o in others]
        entry: dict[str, Any] = {"seed_to_seed_tau": float(np.mean(taus)), "architectures": len(among)}
        if key != "acc_1d":
            entry["icc"] = icc1(np.column_stack([first, *others]))
        out[key] = entry
    return out


def with_ratios(ceiling: dict[str, Any], holdout: dict[str, Any]) -> dict[str, Any]:
    """Each label's held-out tau of the shipped models next to its ceiling, and their ratio."""
    for key in TARGETS:
        model = PREDICTOR_MODELS[key].name
        if key in ceiling and model in holdout:
            tau = holdout[model]["kendall_tau"]
            ceiling[key]["model_tau"] = tau
            ceiling[key]["ratio"] = tau / ceiling[key]["seed_to_seed_tau"] if ceiling[key]["seed_to_seed_tau"] else None
    return ceiling


def format_ceiling(ceiling: dict[str, Any]) -> str:
    """The ceiling next to the models' held-out tau as a Markdown table (printed by fit-surrogate,
    in ``report.md``)."""
    if not ceiling:
        return "label-noise ceiling: no replicates in this campaign (set replicates.n in build-dataset)"
    lines = [f"label-noise ceiling ({ceiling['architectures']} architectures, replicate seeds "
             f"{', '.join(map(str, ceiling['seeds']))}): seed-to-seed Kendall tau between the rows and each replicate "
             "seed (mean over the seeds), ICC(1) over all seeds of an architecture; AVM and std over the "
             "architectures whose every run learned", "",
             "| label | model tau (held out) | seed-to-seed tau (ceiling) | ratio | ICC | architectures |",
             "|---|---|---|---|---|---|"]
    for key in TARGETS:
        if key not in ceiling:
            lines.append(f"| {key} | fewer than 3 replicated architectures learned | | | | |")
            continue
        e = ceiling[key]
        lines.append(f"| {key} | {metric_text(e.get('model_tau'), 2, '-')} | {metric_text(e['seed_to_seed_tau'], 2, '-')} | "
                     f"{metric_text(e.get('ratio'), 2, '-')} | {metric_text(e.get('icc'), 2, '-')} | {e['architectures']} |")
    return "\n".join(lines)

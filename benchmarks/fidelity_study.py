"""Cheap labels that rank like full ones? The digits multi-fidelity study (issue 31, items 4-5).

Ground truth: the shipped full-budget campaign (``datasets/digits_surrogate.sqlite``: 15 epochs, 10
programmings). Cheap labels: the same architectures trained at a cheaper fidelity (a store made by
``build-dataset`` with the budget's overrides, e.g. ``build/fidelity/e2r2.yaml``: 2 epochs, 2
programmings). The architectures with both (the universe) are split as ``fit-surrogate`` splits:
20 % held out by the hash of their id; the rest is the pool a pipeline may train.

At each worker time W (a share of what the full budget costs for the whole pool), over several
seeded resamplings of the pool's order:

* ``baseline``: full-budget rows of the first architectures W buys; the project's surrogate models
  (pairwise XGBoost ranker for acc_1d, regressor for AVM) fitted on them;
* ``sh<eta>/<predictor>``: successive halving: the cheap fidelity for the first n architectures, the
  best 1/eta of them (by their cheap acc_1d) at the full budget, n as large as W allows;
* ``mf<eta>/<predictor>``: the same costs, but the full-budget rows go to a random 1/eta of the cheap
  ones (an unbiased sample of the full labels);

with the predictors ``full`` (the baseline's models on the pipeline's full rows only), ``input``
(:class:`~lightning_nas.surrogate.fidelity.FidelityInputModel`) and ``stacked``
(:class:`~lightning_nas.surrogate.fidelity.StackedModel`). Score: Kendall tau of the predictions on
the held-out architectures against their full-budget acc_1d and AVM (mean and spread over the
resamplings).

Independent of W it also scores, on the held-out architectures, what needs no surrogate: the cheap
rows' own acc_1d and AVM, the learning-curve extrapolator fitted on the pool, and the training-free
noise-robustness proxy (:func:`~lightning_nas.surrogate.fidelity.noise_robustness_proxy`)::

    .venv/bin/python benchmarks/fidelity_study.py --cheap build/fidelity/e2r2.sqlite \\
        --cheap_fidelity '{"epochs": 2, "n_reps": 2}' --json docs/findings/fidelity_study.json \\
        --plot docs/findings/fidelity_study.png

Costs: a full row costs its recorded ``wall_s``; a cheap row ``cost_ratio`` times its
architecture's full cost (default: the ratio of the cheap rows' total wall time to the full rows'
over the universe; the two stores may come from different machines, so give one measured on one
machine with ``--cost_ratio`` when you have it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread: a busy 2-core machine (docs/findings/label-noise.md, "Thread count")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_nas.campaign.store import RowStore  # noqa: E402
from lightning_nas.surrogate.data import inputs  # noqa: E402
from lightning_nas.surrogate.fidelity import (CurveExtrapolator, FidelityInputModel, StackedModel,  # noqa: E402
                                              curve_features, fidelity_vector, noise_robustness_proxy)
from lightning_nas.surrogate.fitting import split  # noqa: E402
from lightning_nas.surrogate.models import XGBParams, fit_xgb_ranker, fit_xgb_regressor  # noqa: E402

TARGETS = {"acc_1d": True, "avm": False}  # label -> ranked (pairwise ranker) or regressed
FULL_BUDGET = {"epochs": 15, "n_reps": 10, "train_fraction": 1.0}
CHEAP_EPOCHS = 2  # the epochs of the cheap rows' learning curves the curve features read


def tau(pred, true) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(pred, true).statistic)


def load(path: str, fidelity: dict | None) -> dict[str, dict]:
    """``ok`` rows by architecture id: a cheaper rung's rows of ``fidelity`` when the store has them,
    else the store's own rows (a campaign run at that budget)."""
    with RowStore(path, readonly=True) as store:
        rows = store.fidelity_rows(fidelity, "ok") if fidelity and store.fidelity_rows(fidelity) else store.rows("ok")
    return {r["arch_id"]: r for r in rows}


class Data:
    def __init__(self, full: dict[str, dict], cheap: dict[str, dict], fidelity: dict, cost_ratio: float | None):
        ids = sorted(set(full) & set(cheap))
        self.ids = ids
        self.full = [full[i] for i in ids]
        self.cheap = [cheap[i] for i in ids]
        _, self.x = inputs(self.full)
        self.y = {t: np.array([r["metrics"][t] for r in self.full]) for t in TARGETS}
        self.y_cheap = {t: np.array([r["metrics"][t] for r in self.cheap]) for t in TARGETS}
        self.cost_full = np.array([r["wall_s"] for r in self.full])
        measured = sum(r["wall_s"] for r in self.cheap) / self.cost_full.sum()
        self.cost_ratio = cost_ratio if cost_ratio is not None else measured
        self.measured_ratio = measured
        self.fid_cheap = np.array(fidelity_vector(fidelity, FULL_BUDGET), dtype=np.float32)
        train, test = split(ids, 0.2, 0)
        self.pool, self.test = train, test
        self.curves = np.array([curve_features(r, CHEAP_EPOCHS) for r in self.cheap], dtype=np.float32)
        self.proxy = np.full((len(ids), 2), np.nan, dtype=np.float32)  # clean accuracy, share kept: set_proxies
        self.proxy_cost = np.full(len(ids), np.nan)

    def set_proxies(self, proxies: dict[str, dict[str, float]]) -> None:
        for i, arch_id in enumerate(self.ids):
            if arch_id in proxies:
                self.proxy[i] = proxies[arch_id]["clean"], proxies[arch_id]["kept"]
                self.proxy_cost[i] = proxies[arch_id]["seconds"]

    def has_proxies(self, indices) -> bool:
        return bool(np.isfinite(self.proxy_cost[np.asarray(indices)]).all())


def fit_predict(kind: str, rank: bool, d: Data, cheap_idx: np.ndarray, full_idx: np.ndarray, target: str,
                seed: int) -> np.ndarray:
    """Predictions on the held-out architectures of one predictor fitted on one pipeline's rows."""
    params, x_test = XGBParams(), d.x[d.test]
    if kind == "full":
        if len(full_idx) < 2:
            return np.zeros(len(d.test))
        return project_model(rank, d.x[full_idx], d.y[target][full_idx], seed).predict(x_test)
    if kind == "input":
        x = np.vstack([d.x[cheap_idx], d.x[full_idx]])
        fid = np.vstack([np.tile(d.fid_cheap, (len(cheap_idx), 1)), np.ones((len(full_idx), len(d.fid_cheap)))])
        y = np.concatenate([d.y_cheap[target][cheap_idx], d.y[target][full_idx]])
        return FidelityInputModel(rank, params, seed).fit(x, fid.astype(np.float32), y).predict(x_test)
    if kind == "stacked":
        model = StackedModel(rank, params, seed).fit(d.x[cheap_idx], d.y_cheap[target][cheap_idx],
                                                      d.x[full_idx], d.y[target][full_idx])
        return model.predict(x_test)
    if kind in ("curve", "proxy"):  # the full label imputed from the cheap information, then the usual model
        extra = d.curves if kind == "curve" else d.proxy
        return imputed(rank, d, extra, cheap_idx, full_idx, target, seed)
    raise ValueError(kind)


def imputed(rank: bool, d: Data, extra: np.ndarray, cheap_idx: np.ndarray, full_idx: np.ndarray, target: str,
            seed: int) -> np.ndarray:
    """Learning-curve extrapolation (``extra``: the cheap runs' curves) or the proxy (``extra``: its
    values) as a pipeline's predictor: a regressor from the architecture and ``extra`` to the full label
    (:class:`CurveExtrapolator`), fitted on the architectures with full rows, labels every other
    architecture the pipeline paid cheap information for; the project's model (ranker or regressor)
    is fitted on all of them and ranks the held-out architectures from their features alone."""
    params = XGBParams()
    if len(full_idx) < 2:
        return np.zeros(len(d.test))
    labels = {int(i): float(d.y[target][i]) for i in full_idx}
    rest = np.array([i for i in cheap_idx if int(i) not in labels], dtype=int)
    if len(rest):
        g = CurveExtrapolator(params, seed).fit(d.x[full_idx], extra[full_idx], d.y[target][full_idx])
        labels.update({int(i): float(v) for i, v in zip(rest, g.predict(d.x[rest], extra[rest]))})
    idx = np.array(sorted(labels), dtype=int)
    return project_model(rank, d.x[idx], np.array([labels[int(i)] for i in idx]), seed).predict(d.x[d.test])


def project_model(rank: bool, x: np.ndarray, y: np.ndarray, seed: int):
    """The project's surrogate model of a label: the pairwise ranker (acc_1d) or the regressor (AVM)."""
    return (fit_xgb_ranker if rank else fit_xgb_regressor)(x, y, XGBParams(), seed)


def pipeline(d: Data, order: np.ndarray, budget: float, eta: float, promote: bool,
             cheap_cost: np.ndarray | None = None, score: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cheap, full) row indices of successive halving (``promote``: the best 1/eta by ``score``, default
    the cheap acc_1d) or a random full subset, the largest that ``budget`` buys. ``cheap_cost``: what
    the cheap information costs per architecture (default: ``cost_ratio`` x its full row)."""
    cheap_cost = d.cost_ratio * d.cost_full if cheap_cost is None else cheap_cost
    score = d.y_cheap["acc_1d"] if score is None else score

    def rows_for(n: int) -> tuple[np.ndarray, np.ndarray]:
        cheap = order[:n]
        k = max(1, math.floor(n / eta))
        if promote:
            full = cheap[np.argsort(-score[cheap], kind="stable")[:k]]
        else:
            full = cheap[:k]  # the order is random: a random subset
        return cheap, full

    def cost(n: int) -> float:
        cheap, full = rows_for(n)
        return cheap_cost[cheap].sum() + d.cost_full[full].sum()

    lo, hi = 1, len(order)  # the largest n within budget (cost grows with n)
    if cost(lo) > budget:
        return order[:0], order[:0]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid - 1)
    return rows_for(lo)


def study(d: Data, shares: list[float], resamplings: int, etas: list[float], predictors: list[str]) -> list[dict]:
    results = []
    total = d.cost_full[d.pool].sum()
    for share in shares:
        budget = share * total
        for seed in range(resamplings):
            order = np.random.default_rng(seed).permutation(d.pool)
            n_base = int(np.searchsorted(np.cumsum(d.cost_full[order]), budget, side="right"))
            base = order[:n_base]
            record = {"share": share, "seed": seed, "name": "baseline", "cheap": 0, "full": int(n_base)}
            for target, rank in TARGETS.items():
                record[target] = tau(fit_predict("full", rank, d, base[:0], base, target, seed), d.y[target][d.test])
            results.append(record)
            for eta in etas:
                for promote in (True, False):
                    cheap, full = pipeline(d, order, budget, eta, promote)
                    for kind in predictors:
                        name = f"{'sh' if promote else 'mf'}{eta:g}/{kind}"
                        record = {"share": share, "seed": seed, "name": name, "cheap": int(len(cheap)),
                                  "full": int(len(full))}
                        for target, rank in TARGETS.items():
                            pred = fit_predict(kind, rank, d, cheap, full, target, seed)
                            record[target] = tau(pred, d.y[target][d.test])
                        results.append(record)
            if d.has_proxies(d.pool):  # the training-free proxy as the cheap information
                for eta in etas:
                    for promote in (True, False):
                        cheap, full = pipeline(d, order, budget, eta, promote, d.proxy_cost, d.proxy[:, 0])
                        for kind in ("full", "proxy"):
                            name = f"{'px-sh' if promote else 'px-mf'}{eta:g}/{kind}"
                            record = {"share": share, "seed": seed, "name": name, "cheap": int(len(cheap)),
                                      "full": int(len(full))}
                            for target, rank in TARGETS.items():
                                record[target] = tau(fit_predict(kind, rank, d, cheap, full, target, seed),
                                                     d.y[target][d.test])
                            results.append(record)
            print(f"W {share:.0%} seed {seed}: done ({len(results)} results)", file=sys.stderr, flush=True)
    return results


def summary(results: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["share"], r["name"]) for r in results}, key=lambda k: (k[0], k[1] != "baseline", k[1]))
    for share, name in keys:
        rs = [r for r in results if r["share"] == share and r["name"] == name]
        row = {"share": share, "name": name, "cheap": statistics.mean(r["cheap"] for r in rs),
               "full": statistics.mean(r["full"] for r in rs)}
        for target in TARGETS:
            values = np.array([r[target] for r in rs], dtype=float)  # NaN: constant predictions (too few rows)
            row[target] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            row[f"{target}_sd"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else 0.0
        out.append(row)
    return out


def digits_tensors() -> tuple[tuple, tuple, tuple, int]:
    """(train, test, input shape, classes) of the digits datamodule, as tensors, for the proxy."""
    from lightning_nas.data import DigitsDataModule

    dm = DigitsDataModule()
    dm.setup()
    train = dm.train_set.tensors if hasattr(dm.train_set, "tensors") else None
    test_set = dm.test_set.tensors if hasattr(dm.test_set, "tensors") else None
    if train is None or test_set is None:
        raise SystemExit("the digits datamodule's splits are not tensors; update the proxy's data loading")
    return train, test_set, tuple(dm.input_shape), dm.num_classes


def cached_proxies(d: Data, indices, path: str | None) -> dict[str, dict[str, float]]:
    """The training-free proxy of the architectures at ``indices``, by id: {clean, kept, seconds}.
    With ``path`` (JSON), the values computed so far are read from it and each new one is added as
    it is computed, so a long run resumes where it stopped."""
    from lightning_nas.space import Architecture

    cache = json.loads(Path(path).read_text()) if path and Path(path).exists() else {}
    todo = [i for i in indices if d.ids[i] not in cache]
    if todo:
        train, test_set, shape, classes = digits_tensors()
        for n, i in enumerate(todo, 1):
            start = time.perf_counter()
            proxy = noise_robustness_proxy([Architecture.from_dict(d.full[i]["arch"])], shape, classes, train, test_set)
            cache[d.ids[i]] = {"clean": float(proxy["clean"][0]), "kept": float(proxy["kept"][0]),
                               "seconds": time.perf_counter() - start}
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(path).with_suffix(".tmp")
                tmp.write_text(json.dumps(cache, indent=0))
                tmp.replace(path)
            print(f"proxy {n}/{len(todo)}: {d.ids[i]} {cache[d.ids[i]]['seconds']:.1f} s", file=sys.stderr, flush=True)
    return {d.ids[i]: cache[d.ids[i]] for i in indices}


def standalone(d: Data) -> dict[str, dict[str, float]]:
    """Scores that need no pipeline, on the held-out architectures: the cheap labels themselves, the
    learning-curve extrapolator (fitted on the pool's cheap curves and full labels) and the
    training-free proxy (when computed for the held-out architectures)."""
    test = d.test
    out = {"cheap labels": {t: tau(d.y_cheap[t][test], d.y[t][test]) for t in TARGETS}}
    out["curve extrapolation"] = {
        t: tau(CurveExtrapolator().fit(d.x[d.pool], d.curves[d.pool], d.y[t][d.pool]).predict(d.x[test], d.curves[test]),
               d.y[t][test]) for t in TARGETS}
    if d.has_proxies(test):
        sign = {"acc_1d": 1, "avm": -1}  # a higher proxy: a higher accuracy, a lower AVM
        out["proxy: brief digital accuracy"] = {t: tau(sign[t] * d.proxy[test, 0], d.y[t][test]) for t in TARGETS}
        out["proxy: share kept under weight noise"] = {t: tau(sign[t] * d.proxy[test, 1], d.y[t][test]) for t in TARGETS}
        out["proxy: s per architecture"] = {t: float(np.mean(d.proxy_cost[test])) for t in TARGETS}
        out["proxy: architectures"] = {t: len(test) for t in TARGETS}
    return out


def markdown(d: Data, rows: list[dict], alone: dict, resamplings: int) -> str:
    shares = sorted({r["share"] for r in rows})
    names = sorted({r["name"] for r in rows}, key=lambda n: (n != "baseline", n))
    cell = {(r["name"], r["share"]): r for r in rows}
    mid = shares[len(shares) // 2]
    lines = [f"Universe {len(d.ids)} architectures (pool {len(d.pool)}, held out {len(d.test)}); cheap row cost "
             f"{d.cost_ratio:.3f} x full (measured from the stores: {d.measured_ratio:.3f}); {resamplings} resamplings."]
    for target, title in (("acc_1d", "acc_1d tau"), ("avm", "AVM tau")):
        head = " | ".join(f"W {s:.0%}" for s in shares)
        lines += ["", f"| {title}: pipeline/predictor | {head} | rows at W {mid:.0%} (cheap / full) |",
                  "|---|" + "---|" * len(shares) + "---|"]
        for name in names:
            values = " | ".join(f"{cell[name, s][target]:.3f} ± {cell[name, s][f'{target}_sd']:.3f}"
                                if (name, s) in cell else "-" for s in shares)
            r = cell.get((name, mid))
            counts = f"{r['cheap']:.0f} / {r['full']:.0f}" if r else "-"
            lines.append(f"| {name} | {values} | {counts} |")
    lines += ["", "| without a pipeline (held-out architectures) | acc_1d tau | AVM tau (proxies signed: higher proxy = lower AVM) |",
              "|---|---|---|"]
    for name, v in alone.items():
        if not name.startswith("proxy: s per") and name != "proxy: architectures":
            lines.append(f"| {name} | {v['acc_1d']:.3f} | {v['avm']:.3f} |")
    if "proxy: architectures" in alone:
        lines += ["", f"The proxy ran on {alone['proxy: architectures']['acc_1d']:.0f} held-out architectures, "
                      f"{alone['proxy: s per architecture']['acc_1d']:.1f} s each."]
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = sorted({r["name"] for r in rows}, key=lambda n: (n != "baseline", n))
    pipelines = sorted({n.split("/")[0] for n in names if n != "baseline"})
    colours = {p: f"C{i}" for i, p in enumerate(pipelines)}  # a colour per pipeline, a line style per predictor
    styles = {"full": ":", "input": "-", "stacked": "--", "curve": "-.", "proxy": (0, (5, 1, 1, 1, 1, 1))}
    for ax, target in zip(axes, TARGETS):
        for name in names:
            rs = sorted((r for r in rows if r["name"] == name), key=lambda r: r["share"])
            pipeline, _, predictor = name.partition("/")
            ax.errorbar([r["share"] * 100 for r in rs], [r[target] for r in rs], [r[f"{target}_sd"] for r in rs],
                        label=name, capsize=3, lw=2.5 if name == "baseline" else 1.2,
                        color="black" if name == "baseline" else colours[pipeline],
                        ls="-" if name == "baseline" else styles.get(predictor, "-."))
        ax.set_xlabel("worker time W (% of the full budget for the pool)")
        ax.set_ylabel(f"held-out Kendall tau, {target}")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", default="datasets/digits_surrogate.sqlite")
    parser.add_argument("--cheap", required=True, help="store with the cheap rows")
    parser.add_argument("--cheap_fidelity", type=json.loads, required=True,
                        help="the cheap rows' budget overrides, JSON, e.g. '{\"epochs\": 2, \"n_reps\": 2}'")
    parser.add_argument("--cost_ratio", type=float, default=None)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.10, 0.25, 0.50])
    parser.add_argument("--etas", type=float, nargs="+", default=[2, 4])
    parser.add_argument("--predictors", nargs="+", default=["full", "input", "stacked", "curve"])
    parser.add_argument("--resamplings", type=int, default=5)
    parser.add_argument("--proxy_cache", default=None, help="JSON file of computed proxies (resumable)")
    parser.add_argument("--proxies_only", action="store_true",
                        help="compute the proxy for every architecture of the universe (held-out first) and stop")
    parser.add_argument("--min_universe", type=int, default=100, help="fewest architectures with both labels")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    d = Data(load(args.full, None), load(args.cheap, args.cheap_fidelity), args.cheap_fidelity, args.cost_ratio)
    if len(d.ids) < args.min_universe:
        raise SystemExit(f"only {len(d.ids)} architectures have both labels; train more cheap rows first")
    if args.proxies_only:
        cached_proxies(d, list(d.test) + list(d.pool), args.proxy_cache)
        return
    if args.proxy_cache and Path(args.proxy_cache).exists():  # the proxy pipelines need the pool's (--proxies_only)
        d.set_proxies(json.loads(Path(args.proxy_cache).read_text()))
    start = time.perf_counter()
    rows = summary(study(d, args.shares, args.resamplings, args.etas, args.predictors))
    alone = standalone(d)
    text = markdown(d, rows, alone, args.resamplings)
    print(text)
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"universe": len(d.ids), "pool": len(d.pool), "held_out": len(d.test),
                                               "cost_ratio": d.cost_ratio, "measured_ratio": d.measured_ratio,
                                               "cheap_fidelity": args.cheap_fidelity, "summary": rows,
                                               "standalone": alone}, indent=1))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()

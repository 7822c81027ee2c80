"""Search in the loop: search, train the top candidates, refit the surrogate, search again.

Round ``r`` searches with the surrogate of round ``r - 1`` (round 1: the search config's own
predictor), trains its best ``candidates`` feasible architectures that the store has not measured
yet with the campaign's recipe into the campaign's store, compares what was predicted with what was
measured, and refits the surrogate on the grown store. After the last round the best *measured*
candidate is trained again with ``confirm_seeds`` (replicates) and is the loop's answer.
(BANANAS, White et al. 2021; neural-predictor-guided evolution: train the predictor's picks, refit.)

Everything a round decides is written to ``out_dir/loop.json`` as soon as it is decided (the
candidates before they train, the refitted surrogate when it is saved) and rows go to the crash-safe
store, so a loop stopped at any point and run again continues where it stopped and trains nothing
twice.
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lightning_nas.errors import UserError

STATE = "loop.json"


@dataclass
class LoopConfig:
    campaign: str
    """The campaign config (``build-dataset``'s): the task, the recipe the candidates train with, the store."""
    search: str
    """The search config each round runs (its predictor is round 1's; later rounds use the refitted one)."""
    surrogate: str
    """The fit-surrogate config of the refits (its ``data`` and ``out_dir`` are the loop's)."""
    store: Optional[str] = None
    """Where the candidates' rows go: null, the campaign's store; a new path starts as a copy of it
    (so a shipped campaign stays as shipped)."""
    rounds: int = 3
    """Rounds of search, training and refit."""
    candidates: int = 8
    """Architectures trained per round: the search's best feasible ones not measured yet."""
    confirm_seeds: list[int] = field(default_factory=lambda: [1, 2])
    """Training seeds the loop's answer is trained again with (each other than the campaign's)."""
    out_dir: str = "runs/loop"
    """``loop.json`` (the loop's state: run the command again to continue), ``loop.md`` and per round
    ``round<r>/search/`` and ``round<r>/surrogate/``."""
    workers: int = 1
    """Worker processes that train candidates (0: in this process)."""

    def check(self) -> None:
        if self.rounds < 1 or self.candidates < 1:
            raise UserError(f"rounds and candidates must be >= 1, got {self.rounds} and {self.candidates}")
        if self.workers < 0:
            raise UserError(f"workers must be >= 0, got {self.workers}")


def copy_store(source: Path, target: Path) -> None:
    """A new store at ``target`` holding what ``source`` holds (SQLite's online backup: a store being
    written, or in WAL mode, is copied whole)."""
    if not source.is_file():
        raise UserError(f"no campaign store at {source} to start the loop's store from; run build-dataset first")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(partial)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    partial.replace(target)


class LoopState:
    """``loop.json``: per round the predictor searched with, the candidates (chosen before they
    train), the report and the refitted surrogate; then the answer."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"settings": settings, "rounds": [], "answer": None}
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("settings") != settings:
                changed = sorted(k for k in settings if stored.get("settings", {}).get(k) != settings[k])
                raise UserError(f"{path} is a loop with other settings ({', '.join(changed)}); use another out_dir "
                                "or the original settings")
            self.data = stored

    def round(self, r: int) -> dict[str, Any]:
        while len(self.data["rounds"]) < r:
            self.data["rounds"].append({"round": len(self.data["rounds"]) + 1})
        return self.data["rounds"][r - 1]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.data, indent=1))
        partial.replace(self.path)


PREDICTED = ("acc_1d", "avm", "std", "p_learned", "acc_1d_low", "acc_1d_high", "avm_low", "avm_high")


def round_report(candidates: list[dict[str, Any]], rows: dict[str, dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Predicted against measured for a round's candidates: per candidate, and the mean bias
    (measured - predicted) of acc_1d (those trained ok) and AVM (those that learned), and the
    predictor's Kendall tau on them."""
    from scipy.stats import kendalltau

    table = []
    for c in candidates:
        row = rows.get(c["arch_id"], {})
        m = row.get("metrics") or {}
        table.append({"arch_id": c["arch_id"], "describe": c["describe"], "status": row.get("status"),
                      "predicted": c["predicted"], "measured": {k: m.get(k) for k in ("acc_1d", "avm", "acc_1d_std")},
                      "learned": m.get("acc_1s", -1) >= threshold})

    def stats(label: str, rows_used: list[dict[str, Any]]) -> dict[str, Any]:
        pred = np.array([t["predicted"][label] for t in rows_used], float)
        meas = np.array([t["measured"][label] for t in rows_used], float)
        tau = float(kendalltau(pred, meas).statistic) if len(rows_used) > 2 else float("nan")
        return {"n": len(rows_used), "bias": float(np.mean(meas - pred)) if len(rows_used) else float("nan"),
                "tau": tau if math.isfinite(tau) else None}

    ok = [t for t in table if t["status"] == "ok"]
    return {"candidates": table, "acc_1d": stats("acc_1d", ok), "avm": stats("avm", [t for t in ok if t["learned"]])}


def run_loop(cfg: LoopConfig) -> dict[str, Any]:
    """Run (or continue) the loop; returns ``loop.json``'s content."""
    from lightning_nas.campaign.campaign import prepare_store, threads_per_worker
    from lightning_nas.campaign.local_executor import LocalExecutor
    from lightning_nas.campaign.store import RowStore
    from lightning_nas.campaign.train import Row, seeded
    from lightning_nas.commands import build_dataset
    from lightning_nas.commands import search as search_cmd
    from lightning_nas.space import Architecture

    cfg.check()
    out = Path(cfg.out_dir)
    campaign_cfg, campaign = build_dataset.load(["--config", cfg.campaign, "--campaign_dir", "null"])
    if any(s == campaign.seed for s in cfg.confirm_seeds) or len(set(cfg.confirm_seeds)) != len(cfg.confirm_seeds):
        raise UserError(f"confirm_seeds must be distinct seeds other than the campaign's ({campaign.seed}), "
                        f"got {cfg.confirm_seeds}")
    search_args = ["--config", cfg.search, "--baseline_random", "false", "--top_k", str(cfg.candidates)]
    first_predictor = search_cmd.parse(search_args).predictor
    store_path = Path(cfg.store or campaign_cfg.store)
    from lightning_nas.checkout import refuse_installed_copy

    refuse_installed_copy(store_path, "search-loop store" if cfg.store else
                          "the campaign's store (search-loop store: null)", "--store")  # the loop writes rows there
    if cfg.store and not store_path.exists():
        copy_store(Path(campaign_cfg.store), store_path)
        print(f"loop: started the store {store_path} as a copy of {campaign_cfg.store}", file=sys.stderr)
    state = LoopState(out / STATE, {"campaign": cfg.campaign, "search": cfg.search, "surrogate": cfg.surrogate,
                                    "store": str(store_path), "rounds": cfg.rounds, "candidates": cfg.candidates,
                                    "confirm_seeds": cfg.confirm_seeds})
    executor = LocalExecutor(cfg.workers)
    threads = threads_per_worker(cfg.workers, 0)
    with RowStore(store_path) as store:
        store.lock()
        dm, task = prepare_store(campaign, store)
        from lightning_nas.surrogate.data import default_learned_threshold

        threshold = default_learned_threshold(dm.num_classes)

        def train(archs: list[Any], seed: Optional[int] = None) -> None:
            jobs = campaign.jobs(archs, task, threads, "cpu")
            if seed is not None:
                from dataclasses import replace

                jobs = [replace(j, config=seeded(j.config, seed)) for j in jobs]
            add = store.add if seed is None else store.add_replicate

            def stored(row: Row) -> None:
                add(Row.from_dict(row))
                print(f"loop: trained {row.arch_id}{'' if seed is None else f' (seed {seed})'}: {row.status}, "
                      f"acc_1d {(row.metrics or {}).get('acc_1d', float('nan')):.2f}", file=sys.stderr)

            executor.run(jobs, stored)

        predictor: Any = first_predictor
        for r in range(1, cfg.rounds + 1):
            rec = state.round(r)
            rec["predictor"] = predictor if isinstance(predictor, str) else json.dumps(predictor)
            if "candidates" not in rec:
                print(f"loop: round {r}/{cfg.rounds}: search with {rec['predictor']}", file=sys.stderr)
                args = [*search_args, "--predictor", rec["predictor"], "--out_dir", str(out / f"round{r}" / "search")]
                _, result = search_cmd.search_and_write(search_cmd.parse(args))
                measured = store.ids(("ok", "diverged"))
                picks = [i for i in result.feasible() if i.arch.id not in measured][: cfg.candidates]
                if not picks:
                    raise UserError(f"round {r}: every feasible architecture the search found is measured already; "
                                    "widen the search (iterations, population) or stop the loop")
                rec["candidates"] = [{"arch_id": i.arch.id, "describe": i.arch.describe(), "arch": i.arch.to_dict(),
                                      "predicted": {k: float(i.values[k]) for k in PREDICTED if k in i.values}}
                                     for i in picks]
                state.save()
            archs = [Architecture.from_dict(c["arch"]) for c in rec["candidates"]]
            done = store.ids(("ok", "diverged"))
            todo = [a for a in archs if a.id not in done]
            if todo:
                print(f"loop: round {r}/{cfg.rounds}: training {len(todo)} of {len(archs)} candidates", file=sys.stderr)
                train(todo)
            rows = {row["arch_id"]: row for row in store.rows() if row["arch_id"] in {a.id for a in archs}}
            rec["report"] = round_report(rec["candidates"], rows, threshold)
            state.save()
            if "surrogate" not in rec:
                from lightning_nas.commands import fit_surrogate

                directory = out / f"round{r}" / "surrogate"
                print(f"loop: round {r}/{cfg.rounds}: refitting the surrogate on {len(store)} rows", file=sys.stderr)
                fit_surrogate.main(["--config", cfg.surrogate, "--data", str(store_path), "--out_dir", str(directory),
                                    "--kfold", "0"])
                rec["surrogate"] = str(directory)
                state.save()
            predictor = rec["surrogate"]
        answer = best_measured(state, store)
        if answer is None:
            raise UserError("no candidate of the loop trained ok; nothing to answer with")
        arch = Architecture.from_dict(answer["arch"])
        have = {seed for a, seed in store.replicate_keys() if a == arch.id}
        for seed in cfg.confirm_seeds:
            if seed not in have:
                print(f"loop: confirming {arch.id} with seed {seed}", file=sys.stderr)
                train([arch], seed)
        again = [r for r in store.replicate_rows() if r["arch_id"] == arch.id and r["seed"] in cfg.confirm_seeds]
        seeds = [answer["measured"]["acc_1d"], *[r["metrics"]["acc_1d"] for r in again]]
        answer["confirmed"] = {"seeds": [campaign.seed, *[r["seed"] for r in again]], "acc_1d": seeds,
                               "acc_1d_mean": float(np.mean(seeds))}
        state.data["answer"] = answer
        state.save()
    (out / "loop.md").write_text(markdown(state.data))
    print(markdown(state.data))
    print(f"loop: wrote {out / STATE}, {out / 'loop.md'}, and per round round<r>/search/ and round<r>/surrogate/",
          file=sys.stderr)
    return state.data


def best_measured(state: LoopState, store: Any) -> Optional[dict[str, Any]]:
    """The candidate of any round with the highest measured acc_1d (ties: the earlier one)."""
    rows = {r["arch_id"]: r for r in store.rows("ok")}
    best = None
    for rec in state.data["rounds"]:
        for c in rec.get("candidates", []):
            row = rows.get(c["arch_id"])
            if row is not None and (best is None or row["metrics"]["acc_1d"] > best["measured"]["acc_1d"]):
                best = {**c, "round": rec["round"], "measured": row["metrics"]}
    return best


def markdown(data: dict[str, Any]) -> str:
    """The loop's report: per round, predicted against measured, bias and tau; then the answer."""
    def num(v: Any, digits: int = 2) -> str:
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"

    lines = ["| round | candidates | acc_1d predicted / measured (mean) | acc_1d bias | acc_1d tau "
             "| AVM predicted / measured (mean, learned) | AVM bias | AVM tau |", "|---|---|---|---|---|---|---|---|"]
    for rec in data["rounds"]:
        rep = rec.get("report")
        if not rep:
            continue
        ok = [c for c in rep["candidates"] if c["status"] == "ok"]
        learned = [c for c in ok if c["learned"]]

        def means(rows: list[dict[str, Any]], label: str) -> str:
            if not rows:
                return "-"
            return (f"{np.mean([c['predicted'][label] for c in rows]):.2f} / "
                    f"{np.mean([c['measured'][label] for c in rows]):.2f}")

        lines.append(f"| {rec['round']} | {len(rep['candidates'])} ({len(ok)} ok) | {means(ok, 'acc_1d')} | "
                     f"{num(rep['acc_1d']['bias'])} | {num(rep['acc_1d']['tau'])} | {means(learned, 'avm')} | "
                     f"{num(rep['avm']['bias'])} | {num(rep['avm']['tau'])} |")
    answer = data.get("answer")
    if answer:
        c = answer.get("confirmed", {})
        lines += ["", f"Answer: `{answer['describe']}` ({answer['arch_id']}, round {answer['round']}): measured acc_1d "
                      f"{answer['measured']['acc_1d']:.2f} %, AVM {answer['measured']['avm']:.2f} pp; with seeds "
                      f"{c.get('seeds')}: acc_1d {', '.join(f'{v:.2f}' for v in c.get('acc_1d', []))} "
                      f"(mean {c.get('acc_1d_mean', float('nan')):.2f} %)."]
    return "\n".join(lines)

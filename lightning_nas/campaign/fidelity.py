"""Cheaper trainings of a campaign's architectures (fidelities) and successive halving over them.

A fidelity is a set of overrides of the campaign's budget (:class:`~lightning_nas.campaign.train.Budget`
fields: fewer epochs, a training fraction, fewer programmings, ...). With ``fidelity.rungs`` a
campaign trains every sampled architecture at the first (cheapest) rung, promotes the best
``1/eta`` of them by ``promote_by`` to the next rung, and so on; the architectures promoted past
the last rung get the campaign's own budget (the top rung) and their rows are the store's rows
(what ``fit-surrogate`` reads). ``eta: 1`` promotes every architecture: each is trained at every
fidelity (the data a multi-fidelity study needs).

Rows of a rung are kept beside the top rung's, keyed by architecture and fidelity (each row
records its ``fidelity``); a promotion is computed from the stored rows on every run, so a campaign
stopped at any rung resumes where it stopped. A promoted architecture trains from scratch at its
next rung: a continued run would not equal a fresh one, since the recipe's learning-rate schedule
and digital warm-up span ``max_epochs``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from lightning_nas.errors import UserError

FIDELITY_FIELDS = ("epochs", "train_fraction", "n_reps", "drift_samples", "limit_train_batches")
"""The budget fields a rung may override (the seed and threads stay the campaign's)."""

PROMOTION_METRICS = ("acc_1d", "acc_1s", "acc_1h", "acc_30d", "acc_eval", "val_acc")
"""What a rung can promote by: accuracies of its rows (higher is better)."""


@dataclass
class Fidelity:
    """Successive halving over cheaper trainings before the campaign's budget (none by default)."""

    rungs: list[dict[str, Any]] = field(default_factory=list)
    """Cheaper trainings before the budget's, cheapest first, each as budget overrides, e.g.
    ``[{epochs: 2, n_reps: 2}, {epochs: 6}]`` (fields: epochs, train_fraction, n_reps,
    drift_samples, limit_train_batches). Empty: every architecture gets the full budget."""
    eta: float = 3.0
    """Each rung promotes its best ``1/eta`` (rounded down, at least one) to the next; 1 promotes all."""
    promote_by: str = "acc_1d"
    """What ranks a rung's architectures for promotion (higher is better): a metric of the rung's
    rows (acc_1d, acc_1s, acc_1h, acc_30d, acc_eval or val_acc), or a ``fit-surrogate`` directory
    whose predicted full-budget acc_1d ranks them. Either way, architectures whose rung row did not
    finish ``ok`` (diverged, failed) rank last."""

    def check(self) -> None:
        if not self.rungs:
            return
        if not (isinstance(self.eta, (int, float)) and not isinstance(self.eta, bool) and self.eta >= 1):
            raise UserError(f"fidelity.eta must be a number >= 1 (1 promotes every architecture), got {self.eta!r}")
        if self.promote_by not in PROMOTION_METRICS and not self.surrogate:
            raise UserError(f"fidelity.promote_by: {self.promote_by!r} is neither a metric ({', '.join(PROMOTION_METRICS)}) "
                            "nor a fit-surrogate directory (with metadata.json)")
        seen = set()
        for i, rung in enumerate(self.rungs):
            if not isinstance(rung, dict) or not rung:
                raise UserError(f"fidelity.rungs[{i}] must be a non-empty mapping of budget overrides "
                                f"({', '.join(FIDELITY_FIELDS)}), got {rung!r}")
            unknown = sorted(set(rung) - set(FIDELITY_FIELDS))
            if unknown:
                raise UserError(f"fidelity.rungs[{i}]: {', '.join(unknown)} can't vary between rungs; a rung sets "
                                f"{', '.join(FIDELITY_FIELDS)}")
            if key(rung) in seen:
                raise UserError(f"fidelity.rungs[{i}] repeats an earlier rung ({label(rung)})")
            seen.add(key(rung))

    @property
    def surrogate(self) -> Optional[str]:
        """``promote_by`` when it names a fit-surrogate directory."""
        from pathlib import Path

        return self.promote_by if (Path(self.promote_by) / "metadata.json").is_file() else None

    def scores(self, candidates: list[Any], rows: dict[str, dict[str, Any]],
               hardware: Callable[[Any], dict[str, float]]) -> dict[str, float]:
        """Promotion scores of the candidates whose rung row finished ``ok`` (higher is better):
        the metric of their rows, or the surrogate's predicted acc_1d on each one's ``hardware``."""
        ok = [a for a in candidates if (rows.get(a.id) or {}).get("status") == "ok"]
        if not self.surrogate:
            metric = self.promote_by
            values = {a.id: rows[a.id].get(metric) if metric in ("acc_eval", "val_acc")
                      else (rows[a.id].get("metrics") or {}).get(metric) for a in ok}
        else:
            from lightning_nas.search.outputs import load_predictor

            predictor = load_predictor(self.surrogate)
            values = {}
            by_hardware: dict[str, list[Any]] = {}
            for a in ok:
                by_hardware.setdefault(json.dumps(hardware(a), sort_keys=True), []).append(a)
            for text, archs in by_hardware.items():
                predicted = predictor.predict(archs, json.loads(text))["acc_1d"]
                values.update({a.id: float(v) for a, v in zip(archs, predicted)})
        return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}

    def sizes(self, n: int) -> list[int]:
        """Architectures trained at each rung and (last) at the full budget, for ``n`` sampled ones."""
        return [max(1, math.floor(n / self.eta ** k + 1e-9)) for k in range(len(self.rungs) + 1)]


def key(rung: dict[str, Any]) -> str:
    """A rung's key in the store: its overrides as canonical JSON."""
    return json.dumps(rung, sort_keys=True)


def label(rung: Optional[dict[str, Any]]) -> str:
    """A rung's short readable name (``epochs2-n_reps2``; ``full`` for the budget's), also its log folder."""
    if not rung:
        return "full"
    return "-".join(f"{k}{v}" for k, v in sorted(rung.items()))


def promoted(candidates: list[Any], scores: dict[str, float], n: int) -> list[Any]:
    """The ``n`` best of ``candidates`` (architectures) by ``scores`` (:meth:`Fidelity.scores`;
    ties broken by architecture id, so a promotion is the same on every run); candidates without a
    score rank last. Keeps the candidates' order."""
    chosen = {a.id for a in sorted(candidates, key=lambda a: (-scores.get(a.id, -math.inf), a.id))[:n]}
    return [a for a in candidates if a.id in chosen]

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
from typing import Any, Optional

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
    """The rung's row metric that ranks architectures for promotion (higher is better): acc_1d,
    acc_1s, acc_1h, acc_30d, acc_eval or val_acc. Diverged and failed rows rank last."""

    def check(self) -> None:
        if not self.rungs:
            return
        if not (isinstance(self.eta, (int, float)) and not isinstance(self.eta, bool) and self.eta >= 1):
            raise UserError(f"fidelity.eta must be a number >= 1 (1 promotes every architecture), got {self.eta!r}")
        if self.promote_by not in PROMOTION_METRICS:
            raise UserError(f"fidelity.promote_by: unknown metric {self.promote_by!r}; use one of "
                            f"{', '.join(PROMOTION_METRICS)}")
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


def promoted(candidates: list[Any], rows: dict[str, dict[str, Any]], metric: str, n: int) -> list[Any]:
    """The ``n`` best of ``candidates`` (architectures) by their rung rows' ``metric`` (ties and
    missing values broken by architecture id, so a promotion is the same on every run); rows that
    did not finish ``ok`` rank last. Keeps the candidates' order."""

    def score(arch: Any) -> tuple[float, str]:
        row = rows.get(arch.id)
        value = None
        if row is not None and row.get("status") == "ok":
            value = row.get(metric) if metric in ("acc_eval", "val_acc") else (row.get("metrics") or {}).get(metric)
        return (-value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf, arch.id)

    chosen = {a.id for a in sorted(candidates, key=score)[:n]}
    return [a for a in candidates if a.id in chosen]

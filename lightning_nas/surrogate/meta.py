"""A surrogate's metadata (``metadata.json``): :class:`SurrogateMeta`, the one typed record that
fitting fills, :meth:`SurrogateMeta.write` writes, :meth:`SurrogateMeta.read` reads and checks,
and the predictor and the search read (task, analog hardware, std floor, held-out errors, split).
The JSON format is the one surrogates have always been written in; keys this version does not
know are kept (:attr:`SurrogateMeta.extra`). No heavy imports (the search reads it)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from lightning_nas.analog import HARDWARE_FEATURES
from lightning_nas.errors import UserError
from lightning_nas.space import SPACE_VERSION
from lightning_nas.surrogate.data import all_feature_names
from lightning_nas.surrogate.specs import PREDICTOR_MODELS

META_FILE = "metadata.json"
REBUILD = "rebuild it with fit-surrogate"


@dataclass(frozen=True)
class Learned:
    """Which rows counted as learned (``metric``, % at 1 s, at least ``threshold``), and ``constant``:
    the ``p_learned`` of every architecture when the training rows were all of one kind (then no
    classifier is shipped), else ``None``."""

    threshold: float
    metric: Optional[str]
    constant: Optional[float]


@dataclass
class SurrogateMeta:
    """What ``fit-surrogate`` records next to the models (fields in the file's order)."""

    feature_names: list[str] = field(default_factory=all_feature_names)
    space_version: Any = SPACE_VERSION
    std_floor: Optional[float] = None
    """Predicted stds are never below it (pp); ``None`` for surrogates older than it."""
    learned: Optional[Learned] = None
    rows: Optional[int] = None
    n_train: Optional[int] = None
    data: str = ""
    """The campaign it was fitted on ("" for rows given in Python)."""
    seed: int = 0
    split: Optional[str] = None
    """How rows were held out (:data:`lightning_nas.surrogate.fitting.SPLIT`; ``None`` before it was recorded)."""
    analog: Optional[dict[str, float]] = None
    """The hardware (:data:`lightning_nas.analog.HARDWARE_FEATURES`) predictions are for by default."""
    analog_configs: Optional[int] = None
    acc_1d_calibration: Optional[dict[str, list[float]]] = None
    xgb: Optional[dict[str, Any]] = None
    mlp: Optional[dict[str, Any]] = None
    mlp_hidden: Optional[list[int]] = None
    metrics: Optional[dict[str, Any]] = None
    """The fit's quality report (what ``report.json`` holds)."""
    task: Optional[dict[str, Any]] = None
    """:class:`lightning_nas.task.TaskInfo` as a dict; ``None`` when the rows recorded none."""
    intervals: Optional[dict[str, Any]] = None
    """Per label (acc_1d, avm, std): the calibration of its prediction intervals
    (:mod:`lightning_nas.surrogate.intervals`: ``level``, ``edges``, ``low``, ``high``) and their
    measured ``coverage``; ``None`` for surrogates fitted before intervals."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of the file this version does not know, kept as read."""

    # -- the file ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["learned"] = dataclasses.asdict(self.learned) if self.learned is not None else None
        return {**out, **self.extra}

    def write(self, directory: Path) -> Path:
        path = Path(directory) / META_FILE
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    @classmethod
    def read(cls, directory: str | Path) -> "SurrogateMeta":
        """``metadata.json`` of a fit-surrogate directory; a missing, damaged, foreign or outdated one is one
        :class:`UserError` naming the file and the fix."""
        directory = Path(directory)
        path = directory / META_FILE
        if not path.is_file():
            raise UserError(f"no surrogate in {directory} (missing {META_FILE}); run fit-surrogate first")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
            raise UserError(f"surrogate {directory}: {META_FILE} is damaged ({type(exc).__name__}); {REBUILD}") from None
        if not isinstance(data, dict):
            raise UserError(f"surrogate {directory}: {META_FILE} holds a {type(data).__name__}, not the "
                            f"surrogate's metadata; {REBUILD}")
        if data.get("feature_names") != all_feature_names():
            raise UserError(f"surrogate {directory} was trained on other features than this version's search "
                            "space provides; retrain it with fit-surrogate")
        if data.get("space_version") != SPACE_VERSION:
            raise UserError(f"surrogate {directory} is for search-space version {data.get('space_version')}, "
                            f"this is version {SPACE_VERSION}; retrain it with fit-surrogate")
        return cls.from_json(data, f"surrogate {directory}: {META_FILE}")

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str, partial: bool = False) -> "SurrogateMeta":
        """The record of ``data`` (a ``metadata.json`` object), checked; ``where`` names it in errors.
        ``partial``: the calibration, the learned rule and the analog hardware may be missing (what a
        custom predictor's ``meta`` records), but what is there is checked all the same."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}

        def check(key: str, ok: bool, problem: str) -> None:
            if not ok and not (partial and key not in data):
                raise UserError(f"{where} {problem}")

        calibration = data.get("acc_1d_calibration")
        check("acc_1d_calibration", isinstance(calibration, dict) and all(
            isinstance(calibration.get(k), list) and len(calibration[k]) >= 2 and all(map(_is_number, calibration[k]))
            for k in ("scores", "values")) and len(calibration["scores"]) == len(calibration["values"]),
            f"lacks a valid acc_1d_calibration (scores and values lists of equal length); {REBUILD}")
        learned = data.get("learned")
        constant = learned.get("constant") if isinstance(learned, dict) else "missing"
        check("learned", isinstance(learned, dict) and isinstance(learned.get("threshold"), (int, float))
              and (constant is None or isinstance(constant, (int, float)) and 0 <= constant <= 1),
              f"lacks the trainability model's settings (learned: threshold, constant); it predates them: {REBUILD}")
        analog = data.get("analog")
        check("analog", isinstance(analog, dict) and all(_is_number(analog.get(k)) for k in HARDWARE_FEATURES),
              f"lacks the analog hardware it was trained on ({', '.join(HARDWARE_FEATURES)}); {REBUILD}")
        for key, (ok, expected) in FIELD_CHECKS.items():
            value = data.get(key)
            if value is not None and not ok(value):
                raise UserError(f"{where} has a {key} that is not {expected} ({value!r:.40}); {REBUILD}")
        values = {k: v for k, v in data.items() if k in known and v is not None}
        if isinstance(learned, dict):
            values["learned"] = Learned(learned["threshold"], learned.get("metric"), constant)
        if "std_floor" in values:
            values["std_floor"] = float(values["std_floor"])
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    # -- what the search reads ---------------------------------------------------------------
    @classmethod
    def of(cls, predictor: Any) -> Optional["SurrogateMeta"]:
        """The metadata a predictor records: a :class:`SurrogatePredictor`'s, or a custom predictor's
        ``meta`` dict in the same format (its missing fields ``None``); ``None`` without one."""
        meta = getattr(predictor, "meta", None)
        if isinstance(meta, cls):
            return meta
        if isinstance(meta, dict):
            return cls.from_json(meta, f"predictor {type(predictor).__name__}: its meta", partial=True)
        return None

    @property
    def tile_size(self) -> Optional[int]:
        """The tile size of the hardware it was trained on."""
        return int(self.analog["tile_size"]) if self.analog and _is_number(self.analog.get("tile_size")) else None

    def prediction_errors(self) -> dict[str, float]:
        """The held-out mean absolute error (pp) of the predictions ``acc_1d``, ``avm`` and ``std`` as the
        fit's report recorded them (AVM and std: over held-out architectures that learned; for a
        surrogate whose points are recentred, :mod:`~lightning_nas.surrogate.intervals`, the error of the
        recentred points on held-out rows they were not calibrated on); a prediction without a
        (numeric) one is left out."""
        holdout = (self.metrics or {}).get("holdout")
        errors = {}
        for target, model in PREDICTOR_MODELS.items():
            scores = holdout.get(model.name) if isinstance(holdout, dict) and model.error else None
            value = scores.get(model.error) if isinstance(scores, dict) else None
            recentred = ((self.intervals or {}).get(target) or {}).get("mae_recentred")
            if _is_number(recentred) and recentred == recentred:  # the points it predicts are recentred
                value = recentred
            if _is_number(value) and value == value:
                errors[target] = float(value)
        return errors


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_interval(cal: Any) -> bool:
    return (isinstance(cal, dict) and _is_number(cal.get("level"))
            and all(isinstance(cal.get(k), list) and all(map(_is_number, cal[k])) for k in ("edges", "low", "high"))
            and len(cal["low"]) == len(cal["high"]) == len(cal["edges"]) + 1
            and all(k not in cal or isinstance(cal[k], list) and len(cal[k]) == len(cal["low"])
                    and all(map(_is_number, cal[k])) for k in ("shift", "centre"))
            and ("shift" in cal) == ("centre" in cal))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _of_type(kind: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, kind)


FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "std_floor": (_is_number, "a number (pp)"), "rows": (_is_int, "a number of rows"),
    "n_train": (_is_int, "a number of rows"), "data": (_of_type(str), "a path"), "seed": (_is_int, "an integer"),
    "split": (_of_type(str), "a text"), "analog_configs": (_is_int, "a count"), "xgb": (_of_type(dict), "an object"),
    "mlp": (_of_type(dict), "an object"), "mlp_hidden": (_of_type(list), "a list"),
    "metrics": (_of_type(dict), "an object"), "task": (_of_type(dict), "an object"),
    "intervals": (lambda v: isinstance(v, dict) and all(_is_interval(c) for c in v.values()),
                  "per label {level, edges, low, high} with one more offset than edges")}
"""The other fields' JSON types (``null`` is allowed for each: a field the fit did not record)."""

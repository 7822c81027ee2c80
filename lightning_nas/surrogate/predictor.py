"""The surrogate predictor and its directory format: :meth:`SurrogatePredictor.save` writes what
:meth:`SurrogatePredictor.load` reads (the one owner of the file format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from lightning_nas.analog import HARDWARE_FEATURES
from lightning_nas.errors import UserError
from lightning_nas.space import SPACE_VERSION, Architecture
from lightning_nas.surrogate.data import all_feature_names, feature_matrix
from lightning_nas.surrogate.models import calibrate

META_FILE = "metadata.json"
MODEL_FILES = {"acc_1d": "acc_1d_ranker.json", "avm": "avm_regressor.json", "std": "std_regressor.json"}
LEARNED_FILE = "learned_classifier.json"
MLP_FILE = "mlp_ranker.pt"
PREDICT_THREADS = 1
"""XGBoost threads for prediction: a search predicts small batches, where one thread is fastest and
does not oversubscribe a busy machine."""


class SurrogatePredictor:
    """``predict(archs) -> {"acc_1d", "avm", "std", "p_learned"}`` from the XGBoost surrogates.

    ``acc_1d`` is the pairwise ranker's score mapped monotonically onto 1-day accuracy in %
    (quantile matching on the training rows: it keeps the ranker's order and stays in the
    measured range); ``avm`` (pp) and ``std`` (pp, 1-day std over programmings) come from the
    regressors, fitted on the architectures that learned, so they describe an architecture that
    learns; ``p_learned`` is the classifier's probability that it does (``acc_1s`` at least the
    metadata's ``learned.threshold``). Predictions are for the analog hardware the surrogate was trained on, unless
    ``analog`` (:meth:`lightning_nas.analog.AnalogConfig.hardware_features`) is given.

    ``meta`` holds ``acc_1d_calibration`` and ``analog`` (used by :meth:`predict`) plus whatever
    the fit recorded (features, space version, report). ``mlp`` is the optional MLP ranker
    (saved for comparison; :meth:`load` does not read it, so a search needs no torch).
    """

    def __init__(self, models: dict[str, Any], meta: dict[str, Any], mlp: Any = None) -> None:
        self.models = models
        self.meta = meta
        self.mlp = mlp

    def save(self, directory: str | Path) -> list[Path]:
        """Write the models and the metadata into ``directory``; returns the files written."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for key, name in MODEL_FILES.items():
            self.models[key].save_model(directory / name)
            written.append(directory / name)
        if self.models.get("learned") is not None:
            self.models["learned"].save_model(directory / LEARNED_FILE)
            written.append(directory / LEARNED_FILE)
        if self.mlp is not None:
            import torch

            torch.save(self.mlp.state_dict(), directory / MLP_FILE)
            written.append(directory / MLP_FILE)
        meta = {"feature_names": all_feature_names(), "space_version": SPACE_VERSION, **self.meta}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2))
        return written + [directory / META_FILE]

    @classmethod
    def load(cls, directory: str | Path) -> "SurrogatePredictor":
        """Read a fit-surrogate directory; a missing, damaged or foreign one is one :class:`UserError`."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise UserError(f"no surrogate in {directory} (missing {META_FILE}); run fit-surrogate first")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
            raise UserError(f"surrogate {directory}: {META_FILE} is damaged ({type(exc).__name__}); "
                            "rebuild it with fit-surrogate") from None
        if not isinstance(meta, dict):
            raise UserError(f"surrogate {directory}: {META_FILE} holds a {type(meta).__name__}, not the "
                            "surrogate's metadata; rebuild it with fit-surrogate")
        if meta.get("feature_names") != all_feature_names():
            raise UserError(f"surrogate {directory} was trained on other features than this version's search "
                            "space provides; retrain it with fit-surrogate")
        if meta.get("space_version") != SPACE_VERSION:
            raise UserError(f"surrogate {directory} is for search-space version {meta.get('space_version')}, "
                            f"this is version {SPACE_VERSION}; retrain it with fit-surrogate")
        _check_meta(directory, meta)
        models = {key: _load_model(directory, key) for key in MODEL_FILES}
        models["learned"] = _load_classifier(directory) if meta["learned"]["constant"] is None else None
        return cls(models, meta)

    def predict(self, archs: Sequence[Architecture], analog: Optional[dict[str, float]] = None) -> dict[str, np.ndarray]:
        if not archs:
            return {"acc_1d": np.empty(0), "avm": np.empty(0), "std": np.empty(0), "p_learned": np.empty(0)}
        x = feature_matrix(archs, analog or self.meta["analog"])
        classifier = self.models.get("learned")
        p_learned = (classifier.predict_proba(x)[:, 1].astype(np.float64) if classifier is not None
                     else np.full(len(archs), float(self.meta["learned"]["constant"])))
        return {"acc_1d": calibrate(self.models["acc_1d"].predict(x), self.meta["acc_1d_calibration"]),
                "avm": self.models["avm"].predict(x).astype(np.float64),
                "std": np.clip(self.models["std"].predict(x).astype(np.float64), self.std_floor, None),
                "p_learned": p_learned}

    @property
    def std_floor(self) -> float:
        """Predicted stds are never below this (pp): the surrogate's ``std_floor`` (the 5th
        percentile of the stds its campaign measured), 0 for surrogates older than it."""
        floor = self.meta.get("std_floor")
        return float(floor) if isinstance(floor, (int, float)) and not isinstance(floor, bool) else 0.0


def _check_meta(directory: Path, meta: dict[str, Any]) -> None:
    """What :meth:`SurrogatePredictor.predict` reads from the metadata, checked once at load."""
    calibration = meta.get("acc_1d_calibration")
    ok = (isinstance(calibration, dict) and all(
        isinstance(calibration.get(k), list) and len(calibration[k]) >= 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in calibration[k])
        for k in ("scores", "values")) and len(calibration["scores"]) == len(calibration["values"]))
    if not ok:
        raise UserError(f"surrogate {directory}: {META_FILE} lacks a valid acc_1d_calibration (scores and values "
                        "lists of equal length); rebuild it with fit-surrogate")
    learned = meta.get("learned")
    constant = learned.get("constant") if isinstance(learned, dict) else "missing"
    if not (isinstance(learned, dict) and isinstance(learned.get("threshold"), (int, float))
            and (constant is None or isinstance(constant, (int, float)) and 0 <= constant <= 1)):
        raise UserError(f"surrogate {directory}: {META_FILE} lacks the trainability model's settings (learned: "
                        "threshold, constant); it predates them: rebuild it with fit-surrogate")
    analog = meta.get("analog")
    if not isinstance(analog, dict) or any(not isinstance(analog.get(k), (int, float)) for k in HARDWARE_FEATURES):
        raise UserError(f"surrogate {directory}: {META_FILE} lacks the analog hardware it was trained on "
                        f"({', '.join(HARDWARE_FEATURES)}); rebuild it with fit-surrogate")


def _load_classifier(directory: Path) -> Any:
    """The learned classifier (``binary:logistic``)."""
    import xgboost as xgb

    return _load_xgb(directory, LEARNED_FILE, xgb.XGBClassifier(), lambda objective: objective == "binary:logistic",
                     "learned classifier")


def _load_model(directory: Path, key: str) -> Any:
    """The ranker (acc_1d) or a regressor (avm, std)."""
    import xgboost as xgb

    ranker = key == "acc_1d"
    return _load_xgb(directory, MODEL_FILES[key], xgb.XGBRanker() if ranker else xgb.XGBRegressor(),
                     lambda objective: objective.startswith("rank:") == ranker,
                     f"{key} {'ranker' if ranker else 'regressor'}")


def _load_xgb(directory: Path, name: str, model: Any, expected: Callable[[str], bool], kind: str) -> Any:
    """One XGBoost model file into ``model``, checked to hold the ``kind`` of model it should."""
    import xgboost as xgb

    path = directory / name
    try:
        model.load_model(path)
        objective = json.loads(model.get_booster().save_config())["learner"]["objective"]["name"]
    except TypeError as exc:  # xgboost: "Loading an estimator with different type"
        raise UserError(f"surrogate {directory}: {path.name} holds another kind of model ({exc}); rebuild it "
                        "with fit-surrogate") from None
    except (OSError, ValueError, KeyError, xgb.core.XGBoostError) as exc:
        raise UserError(f"surrogate {directory}: {path.name} is missing or damaged ({type(exc).__name__}); "
                        "rebuild it with fit-surrogate") from None
    if not expected(objective):
        raise UserError(f"surrogate {directory}: {path.name} holds a {objective} model, not the {kind}; rebuild it "
                        "with fit-surrogate")
    model.set_params(n_jobs=PREDICT_THREADS)
    return model

"""The surrogate predictor and its directory format: :meth:`SurrogatePredictor.save` writes what
:meth:`SurrogatePredictor.load` reads (the one owner of the file format; the metadata's is
:class:`lightning_nas.surrogate.meta.SurrogateMeta`, the models' files are named in
:data:`lightning_nas.surrogate.specs.MODELS`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lightning_nas.errors import UserError
from lightning_nas.space import Architecture
from lightning_nas.surrogate.data import feature_matrix
from lightning_nas.surrogate.meta import REBUILD, SurrogateMeta
from lightning_nas.surrogate.intervals import interval, recentred
from lightning_nas.surrogate.models import calibrate
from lightning_nas.surrogate.specs import MLP_MODEL, PREDICTOR_MODELS, ModelSpec

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

    ``meta`` (:class:`SurrogateMeta`) holds the calibration, the learned rule and the analog
    hardware (used by :meth:`predict`) plus whatever the fit recorded (features, space version,
    report). ``models`` are the :data:`PREDICTOR_MODELS` by target (``learned``: ``None`` when the
    metadata's ``learned.constant`` answers instead). ``mlp`` is the optional MLP ranker (saved for
    comparison; :meth:`load` does not read it, so a search needs no torch).
    """

    def __init__(self, models: dict[str, Any], meta: SurrogateMeta, mlp: Any = None) -> None:
        self.models = models
        self.meta = meta
        self.mlp = mlp

    def save(self, directory: str | Path) -> list[Path]:
        """Write the models and the metadata into ``directory``; returns the files written."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for target, spec in PREDICTOR_MODELS.items():
            if self.models.get(target) is not None:
                self.models[target].save_model(directory / spec.file)
                written.append(directory / spec.file)
        if self.mlp is not None:
            import torch

            torch.save(self.mlp.state_dict(), directory / MLP_MODEL.file)
            written.append(directory / MLP_MODEL.file)
        return written + [self.meta.write(directory)]

    @classmethod
    def load(cls, directory: str | Path) -> "SurrogatePredictor":
        """Read a fit-surrogate directory; a missing, damaged or foreign one is one :class:`UserError`."""
        directory = Path(directory)
        meta = SurrogateMeta.read(directory)
        models = {target: _load_xgb(directory, spec) if target != "learned" or meta.learned.constant is None else None
                  for target, spec in PREDICTOR_MODELS.items()}
        return cls(models, meta)

    def predict(self, archs: Sequence[Architecture], analog: Optional[dict[str, float]] = None) -> dict[str, np.ndarray]:
        if not archs:
            return {k: np.empty(0) for k in self.outputs}
        x = feature_matrix(archs, analog or self.meta.analog)
        classifier = self.models.get("learned")
        p_learned = (classifier.predict_proba(x)[:, 1].astype(np.float64) if classifier is not None
                     else np.full(len(archs), float(self.meta.learned.constant)))
        score = self.models["acc_1d"].predict(x).astype(np.float64)
        out = {"acc_1d": calibrate(score, self.meta.acc_1d_calibration), "acc_1d_score": score,
               "avm": self.models["avm"].predict(x).astype(np.float64),
               "std": np.clip(self.models["std"].predict(x).astype(np.float64), self.std_floor, None),
               "p_learned": p_learned}
        for target, cal in (self.meta.intervals or {}).items():  # the bounds of each label's interval
            out[f"{target}_low"], out[f"{target}_high"] = interval(out[target], cal)
            out[target] = recentred(out[target], cal)  # the point on its bin's median held-out residual
        out["std"] = np.clip(out["std"], self.std_floor, None)
        return out

    @property
    def outputs(self) -> list[str]:
        """What :meth:`predict` returns: the labels, the ranker's score, ``p_learned`` and, for a
        surrogate with intervals, ``<label>_low`` and ``<label>_high``."""
        bounds = [f"{t}_{side}" for t in (self.meta.intervals or {}) for side in ("low", "high")]
        return ["acc_1d", "acc_1d_score", "avm", "std", "p_learned", *bounds]

    @property
    def std_floor(self) -> float:
        """Predicted stds are never below this (pp): the surrogate's ``std_floor`` (the 5th
        percentile of the stds its campaign measured), 0 for surrogates older than it."""
        return self.meta.std_floor if self.meta.std_floor is not None else 0.0


XGB_CLASSES = {"ranker": "XGBRanker", "regressor": "XGBRegressor", "classifier": "XGBClassifier"}


def _objective_fits(kind: str, objective: str) -> bool:
    """Whether a model file's xgboost objective is one of a ``kind`` of model."""
    if kind == "classifier":
        return objective == "binary:logistic"
    return objective.startswith("rank:") == (kind == "ranker")


def _load_xgb(directory: Path, spec: ModelSpec) -> Any:
    """One shipped XGBoost model file, checked to hold the kind of model it should."""
    import xgboost as xgb

    path = directory / spec.file
    model = getattr(xgb, XGB_CLASSES[spec.kind])()
    try:
        model.load_model(path)
        objective = json.loads(model.get_booster().save_config())["learner"]["objective"]["name"]
    except TypeError as exc:  # xgboost: "Loading an estimator with different type"
        raise UserError(f"surrogate {directory}: {path.name} holds another kind of model ({exc}); {REBUILD}") from None
    except (OSError, ValueError, KeyError, xgb.core.XGBoostError) as exc:
        raise UserError(f"surrogate {directory}: {path.name} is missing or damaged ({type(exc).__name__}); "
                        f"{REBUILD}") from None
    if not _objective_fits(spec.kind, objective):
        raise UserError(f"surrogate {directory}: {path.name} holds a {objective} model, not the {spec.target} "
                        f"{spec.kind}; {REBUILD}")
    model.set_params(n_jobs=PREDICT_THREADS)
    return model

"""The surrogate predictor and its directory format: :meth:`SurrogatePredictor.save` writes what
:meth:`SurrogatePredictor.load` reads (the one owner of the file format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lightning_nas.errors import UserError
from lightning_nas.space import SPACE_VERSION, Architecture
from lightning_nas.surrogate.data import all_feature_names, feature_matrix
from lightning_nas.surrogate.models import calibrate

META_FILE = "metadata.json"
MODEL_FILES = {"acc_1d": "acc_1d_ranker.json", "avm": "avm_regressor.json", "std": "std_regressor.json"}
MLP_FILE = "mlp_ranker.pt"
PREDICT_THREADS = 1
"""XGBoost threads for prediction: a search predicts small batches, where one thread is fastest and
does not oversubscribe a busy machine."""


class SurrogatePredictor:
    """``predict(archs) -> {"acc_1d", "avm", "std"}`` from the XGBoost surrogates.

    ``acc_1d`` is the pairwise ranker's score mapped monotonically onto 1-day accuracy in %
    (quantile matching on the training rows: it keeps the ranker's order and stays in the
    measured range); ``avm`` (pp) and ``std`` (pp, 1-day std over programmings) come from the
    regressors. Predictions are for the analog hardware the surrogate was trained on, unless
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
        if self.mlp is not None:
            import torch

            torch.save(self.mlp.state_dict(), directory / MLP_FILE)
            written.append(directory / MLP_FILE)
        meta = {"feature_names": all_feature_names(), "space_version": SPACE_VERSION, **self.meta}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2))
        return written + [directory / META_FILE]

    @classmethod
    def load(cls, directory: str | Path) -> "SurrogatePredictor":
        import xgboost as xgb

        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise UserError(f"no surrogate in {directory} (missing {META_FILE}); run fit-surrogate first")
        meta = json.loads(meta_path.read_text())
        if meta.get("feature_names") != all_feature_names():
            raise UserError(f"surrogate {directory} was trained on other features than this version's search "
                            "space provides; retrain it with fit-surrogate")
        if meta.get("space_version") != SPACE_VERSION:
            raise UserError(f"surrogate {directory} is for search-space version {meta.get('space_version')}, "
                            f"this is version {SPACE_VERSION}; retrain it with fit-surrogate")
        models = {}
        for key, name in MODEL_FILES.items():
            model = xgb.XGBRanker() if key == "acc_1d" else xgb.XGBRegressor()
            model.load_model(directory / name)
            model.set_params(n_jobs=PREDICT_THREADS)
            models[key] = model
        return cls(models, meta)

    def predict(self, archs: Sequence[Architecture], analog: Optional[dict[str, float]] = None) -> dict[str, np.ndarray]:
        if not archs:
            return {"acc_1d": np.empty(0), "avm": np.empty(0), "std": np.empty(0)}
        x = feature_matrix(archs, analog or self.meta["analog"])
        return {"acc_1d": calibrate(self.models["acc_1d"].predict(x), self.meta["acc_1d_calibration"]),
                "avm": self.models["avm"].predict(x).astype(np.float64),
                "std": np.clip(self.models["std"].predict(x).astype(np.float64), 0.0, None)}  # a std is >= 0

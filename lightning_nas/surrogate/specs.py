"""The surrogate's models, each named once: :data:`MODELS` is the one list that fitting fits and
scores, the report tabulates and plots, a surrogate directory ships (:data:`PREDICTOR_MODELS`) and the
search reads held-out errors from. A model's ``name`` is its key in ``report.json`` (``holdout``,
``kfold``). No heavy imports: the search reads this without xgboost or torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

TARGET_ORDER = ("acc_1d", "avm", "std", "learned")
"""What a model predicts: a label of :data:`lightning_nas.surrogate.data.TARGETS` or ``learned``
(whether the architecture learns). Models are scored by it (acc_1d: how they rank, AVM and std:
regression errors on the rows that learned, learned: classification), and report.md's models
table lists them in this order."""

RANKING = (("kendall_tau", "tau", ""), ("spearman_rho", "rho", ""))
REGRESSION = (("mae", "MAE", " pp"), ("r2", "R^2", ""), ("kendall_tau", "tau", ""))
CLASSIFICATION = (("auc", "ROC AUC", ""), ("accuracy", "accuracy", ""), ("brier", "Brier", ""),
                  ("base_rate", "base rate", ""))


@dataclass(frozen=True)
class ModelSpec:
    """One surrogate model: how it is fitted, and where the report, the files and the search find it."""

    name: str
    """Its key in the report (``report.json`` ``holdout`` and ``kfold``)."""
    target: str
    """What it predicts and is scored against (:data:`TARGET_ORDER`)."""
    kind: str
    """``ranker``, ``regressor`` or ``classifier`` (for a shipped model: the xgboost objective its file must hold)."""
    learner: str
    """``xgb``, ``lgbm`` or ``mlp``."""
    compared_as: str = ""
    """Its learner's row in the comparison of learners (``report.json`` ``comparison``); "" = not compared."""
    label: str = ""
    """Its row in report.md's models table; "" = not listed there."""
    columns: tuple[tuple[str, str, str], ...] = ()
    """(metric, label, unit) of that row."""
    file: str = ""
    """The file a surrogate directory ships it in; "" = not shipped."""
    error: str = ""
    """Its metric that is the held-out mean absolute error (pp) of the prediction: the search states it
    beside a constraint on the prediction."""
    plot: Optional[tuple[str, str, str]] = None
    """(figure key: ``scatter_<key>.png``, title, x label) of its held-out scatter plot."""
    via: tuple[str, ...] = ()
    """A comparison that predicts ``target`` through other labels (regressed instead of it; made when
    every row has them): ``(acc_1s, acc_30d)``, their difference; ``(drift_slope,)``, the slope times
    the decades of drift time."""

    @property
    def calibrated(self) -> bool:
        """Its scores are mapped onto the target's scale (:func:`lightning_nas.surrogate.models.calibration`:
        the XGBoost ranker); the MLP's are raw scores."""
        return self.kind == "ranker" and self.learner == "xgb"

    @property
    def learned_rows(self) -> bool:
        """Fitted and scored on the rows that learned only (AVM and std: off them, noise)."""
        return self.target in ("avm", "std")


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("xgb_acc_1d_ranker", "acc_1d", "ranker", "xgb", "XGBoost pairwise ranker / regressors",
              "XGBoost ranker, 1-day accuracy", RANKING + (("mae_calibrated", "calibrated MAE", " pp"),),
              file="acc_1d_ranker.json", error="mae_calibrated",
              plot=("acc_1d", "XGBoost ranker (calibrated): 1-day acc %", "predicted")),
    ModelSpec("xgb_avm_regressor", "avm", "regressor", "xgb", "XGBoost pairwise ranker / regressors",
              "XGBoost regressor, AVM (learned rows)", REGRESSION, file="avm_regressor.json", error="mae",
              plot=("avm", "XGBoost regressor: AVM (pp)", "predicted")),
    ModelSpec("xgb_std_regressor", "std", "regressor", "xgb", "XGBoost pairwise ranker / regressors",
              "XGBoost regressor, 1-day std (learned rows)", REGRESSION, file="std_regressor.json", error="mae",
              plot=("std", "XGBoost regressor: 1-day std (pp)", "predicted")),
    ModelSpec("xgb_learned_classifier", "learned", "classifier", "xgb",
              label="XGBoost classifier, learned or not (every row)", columns=CLASSIFICATION,
              file="learned_classifier.json"),
    ModelSpec("mlp_acc_1d_ranker", "acc_1d", "ranker", "mlp", "MLP pairwise hinge ranker",
              "MLP pairwise hinge ranker, 1-day accuracy", RANKING, file="mlp_ranker.pt",
              plot=("mlp", "MLP ranker score vs 1-day acc %", "MLP score")),
    ModelSpec("lgbm_acc_1d_regressor", "acc_1d", "regressor", "lgbm", "LightGBM regressors"),
    ModelSpec("lgbm_avm_regressor", "avm", "regressor", "lgbm", "LightGBM regressors"),
    ModelSpec("lgbm_std_regressor", "std", "regressor", "lgbm", "LightGBM regressors"),
    ModelSpec("xgb_avm_from_acc_1s_minus_acc_30d", "avm", "regressor", "xgb",
              "XGBoost regressors of acc_1s and acc_30d, AVM as their difference", via=("acc_1s", "acc_30d")),
    ModelSpec("xgb_avm_from_drift_slope", "avm", "regressor", "xgb",
              "XGBoost regressor of the drift slope (pp per decade of time, all drift times), AVM as -slope x decades",
              via=("drift_slope",)),
)

PREDICTOR_MODELS: dict[str, ModelSpec] = {m.target: m for m in MODELS if m.file and m.learner == "xgb"}
"""The models :class:`lightning_nas.surrogate.SurrogatePredictor` answers with, by target (acc_1d,
avm, std, learned); the MLP ranker is shipped for comparison only."""

MLP_MODEL = next(m for m in MODELS if m.learner == "mlp")

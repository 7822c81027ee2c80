"""Fit the surrogates on a campaign's rows and measure them on held-out rows (and k folds)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np

from lightning_nas.errors import UserError
from lightning_nas.files import staged_directory
from lightning_nas.surrogate.ceiling import label_ceiling, with_ratios
from lightning_nas.surrogate.data import (LEARNED_METRIC, TrainingSet, comparison_targets, default_learned_threshold,
                                         inputs, learned_mask, training_set)
from lightning_nas.surrogate.intervals import calibrate_intervals, measured_coverage
from lightning_nas.surrogate.meta import Learned, SurrogateMeta
from lightning_nas.surrogate.mlp import MLPParams, fit_mlp_ranker
from lightning_nas.surrogate.models import (XGBParams, calibrate, calibration, fit_learned_classifier,
                                           fit_lgbm_regressor, fit_threads, fit_xgb_ranker, fit_xgb_regressor)
from lightning_nas.surrogate.predictor import SurrogatePredictor
from lightning_nas.surrogate.report import (campaign_summary, classification_quality, comparison_table, coverage_plot,
                                           markdown_report, ranking_quality, regression_quality, scatter)
from lightning_nas.surrogate.specs import MLP_MODEL, MODELS, PREDICTOR_MODELS, ModelSpec

Progress = Callable[[str], None]
"""Called with the name of each step of a fit as it starts (:func:`fit_steps` of them)."""

MIN_HELD_OUT = 20
"""Fewest held-out rows whose metrics the report trusts. Kendall's tau over n rows has a standard
error of about sqrt(2(2n + 5) / (9n(n - 1))) with no correlation: 0.16 at 20 rows (a tau of 0.8 is
then told from 0.5), 0.24 at 10 and 1.0 at 2, where any tau is +-1. A campaign needs 100 rows at the
default test_fraction of 0.2."""


def tau_standard_error(n: int) -> float:
    """The standard error of Kendall's tau over ``n`` uncorrelated pairs (inf below 2)."""
    return (2 * (2 * n + 5) / (9 * n * (n - 1))) ** 0.5 if n >= 2 else float("inf")


def small_held_out(report: dict[str, Any], test_fraction: float) -> list[str]:
    """One warning per held-out set smaller than :data:`MIN_HELD_OUT` (every row; the learned rows
    the AVM and std models are scored on), with the numbers."""
    out = []
    for what, n in (("held-out rows", report["n_test"]), ("held-out rows that learned (AVM, std)",
                                                           report["learned"]["n_test"])):
        if n < MIN_HELD_OUT:
            need = int(np.ceil(MIN_HELD_OUT / test_fraction))
            out.append(f"only {n} {what}: the held-out metrics can't be trusted (a Kendall tau over {n} rows has a "
                       f"standard error of {tau_standard_error(n):.2f}; R^2 swings as widely); they need at least "
                       f"{MIN_HELD_OUT} (about {need} campaign rows at test_fraction {test_fraction:g}, more if not "
                       "all learn), or use kfold for every row to be scored once")
            break  # the first one says it
    return out


def fit_steps(kfold: int) -> int:
    """How many :data:`Progress` steps a fit with ``kfold`` folds makes, its files included."""
    return len(MODELS) * (1 + kfold) + len([m for m in MODELS if m.plot]) + 1


SPLIT = "sha256 of seed and architecture id"
"""How :func:`split` holds rows out (recorded in ``metadata.json``: surrogates fitted before it have none)."""


def split(keys: Sequence[str], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices, both sorted: the ``round(test_fraction x n)`` rows (for n >= 2 at
    least one, at most n - 1) whose hash of ``seed`` and key (the architecture id) is smallest are held out.
    A row's hash does not depend on the other rows, so a campaign that grows keeps its held-out rows
    held out (bar the few new rows that take places at the boundary) and the metrics at two sizes
    are measured on nearly nested test sets; a seeded permutation re-drew the whole split with every
    new row (held-out ranker tau 0.82 at 807 rows, 0.77 at 810)."""
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}")
    digests = [hashlib.sha256(f"{seed}:{key}".encode()).hexdigest() for key in keys]
    order = sorted(range(len(keys)), key=lambda i: (digests[i], i))
    n_test = min(max(1, int(round(test_fraction * len(keys)))), len(keys) - 1)
    return np.sort(np.asarray(order[n_test:], dtype=np.int64)), np.sort(np.asarray(order[:n_test], dtype=np.int64))


def check_kfold(k: int, n_rows: int) -> None:
    if k and not 2 <= k <= n_rows:
        raise UserError(f"kfold must be 0 (off) or 2..{n_rows}, got {k}")


MIN_LEARNED_ROWS = 5
"""Fewest learned training rows the AVM and std regressors are fitted on."""


class Fitted(NamedTuple):
    """One model of :data:`MODELS` fitted on a split, with its held-out predictions."""

    model: Any
    """``None`` for a comparison made of several regressors, and for the classifier when the rows
    were all of one kind."""
    rows: np.ndarray
    """The held-out rows it predicted (AVM and std: those that learned)."""
    predicted: np.ndarray
    settings: dict[str, Any]
    """What the predictor needs besides the model: the ranker's ``calibration``, the learned ``share``."""


class Split(NamedTuple):
    """A split of the rows and the settings every model of one fit shares."""

    x: np.ndarray
    y: dict[str, np.ndarray]
    learned: np.ndarray
    train: np.ndarray
    test: np.ndarray
    not_learned: np.ndarray
    xgb: XGBParams
    mlp: MLPParams
    seed: int

    def learned_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(training, held-out) rows that learned."""
        return self.train[self.learned[self.train]], self.test[self.learned[self.test]]

    def rows(self, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
        """(training, held-out) rows of ``spec``: only those that learned for AVM and std."""
        return self.learned_rows() if spec.learned_rows else (self.train, self.test)


def fit_model(spec: ModelSpec, s: Split) -> Fitted:
    """Fit ``spec`` on its training rows of ``s`` and predict its held-out rows."""
    fit, test = s.rows(spec)
    x, y = s.x, s.y
    if spec.kind == "classifier":  # every row, and the diverged architectures as not learned
        learned = np.concatenate([s.learned[fit], np.zeros(len(s.not_learned), dtype=bool)])
        model = fit_learned_classifier(np.concatenate([x[fit], s.not_learned]), learned, s.xgb, s.seed)
        share = float(learned.mean())
        p = model.predict_proba(x[test])[:, 1] if model is not None else np.full(len(test), share)
        return Fitted(model, test, p, {"share": share})
    if spec.learner == "mlp":
        model = fit_mlp_ranker(x[fit], y[spec.target][fit], s.mlp, s.seed)
        return Fitted(model, test, model.score(x[test]), {})
    if spec.calibrated:
        model = fit_xgb_ranker(x[fit], y[spec.target][fit], s.xgb, s.seed)
        cal = calibration(model.predict(x[fit]), y[spec.target][fit])
        return Fitted(model, test, calibrate(model.predict(x[test]), cal), {"calibration": cal})
    regressor = fit_lgbm_regressor if spec.learner == "lgbm" else fit_xgb_regressor
    if spec.via:
        p = {k: regressor(x[fit], y[k][fit], s.xgb, s.seed).predict(x[test]) for k in spec.via}
        if spec.via == ("drift_slope",):  # pp per decade, times the decades of drift time
            predicted = p["drift_slope"] * y["avm_per_slope"][test]
        else:  # the difference of the two accuracies
            predicted = p[spec.via[0]] - p[spec.via[1]]
        return Fitted(None, test, predicted, {})
    model = regressor(x[fit], y[spec.target][fit], s.xgb, s.seed)
    return Fitted(model, test, model.predict(x[test]), {})


def quality(spec: ModelSpec, predicted: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """The held-out metrics of ``spec``: how acc_1d models rank (and a calibrated one's error), AVM
    and std models' regression errors, the classifier's."""
    if spec.target == "learned":
        return classification_quality(predicted, true)
    if spec.target != "acc_1d":
        return regression_quality(predicted, true)
    ranking = ranking_quality(predicted, true)
    return {**ranking, "mae_calibrated": float(np.mean(np.abs(predicted - true)))} if spec.calibrated else ranking


def fit_and_score(x: np.ndarray, y: dict[str, np.ndarray], learned: np.ndarray, train: np.ndarray, test: np.ndarray,
                  xgb: XGBParams, mlp: MLPParams, seed: int, not_learned: Optional[np.ndarray] = None,
                  progress: Progress = lambda step: None) -> tuple[dict[str, Fitted], dict[str, Any]]:
    """Fit every model of :data:`MODELS` on ``train``; return (fitted models by name, metrics on ``test``).

    The acc_1d rankers and the learned classifier use every row; the AVM and std models only the
    rows that learned (``learned``), and are scored on the held-out rows that learned. The
    classifier also trains on ``not_learned`` (inputs of architectures whose training diverged:
    they have no metrics, and did not learn). ``progress`` is told each model's name as it starts. A comparison ``via`` labels the rows lack is left out."""
    extra = not_learned if not_learned is not None else np.empty((0, x.shape[1]), dtype=x.dtype)
    s = Split(x, y, learned, train, test, extra, xgb, mlp, seed)
    fit_l, test_l = s.learned_rows()
    if len(fit_l) < MIN_LEARNED_ROWS:
        raise UserError(f"only {len(fit_l)} training rows learned (acc_1s >= learned_threshold); the AVM and std "
                        f"models need at least {MIN_LEARNED_ROWS}: lower learned_threshold (0 = every row) or "
                        "give the campaign a budget in which more architectures learn")
    if len(test_l) < 2:
        raise UserError(f"only {len(test_l)} held-out rows learned (acc_1s >= learned_threshold); the AVM and std "
                        "models can't be scored on fewer than 2: raise test_fraction, use fewer kfold folds, or lower "
                        "learned_threshold (0 = every row)")
    truth = {**y, "learned": learned}
    fitted: dict[str, Fitted] = {}
    metrics: dict[str, Any] = {}
    for spec in MODELS:
        progress(spec.name)
        if all(k in y for k in spec.via):
            one = fitted[spec.name] = fit_model(spec, s)
            metrics[spec.name] = quality(spec, one.predicted, truth[spec.target][one.rows])
    return fitted, metrics


def kfold_metrics(x, y, learned: np.ndarray, k: int, xgb: XGBParams, mlp: MLPParams, seed: int,
                  not_learned: Optional[np.ndarray] = None, progress: Progress = lambda step: None) -> dict[str, Any]:
    """Mean and std of every metric over ``k`` seeded folds (``not_learned``: see :func:`fit_and_score`)."""
    check_kfold(k, len(x))
    folds = np.array_split(np.random.default_rng(seed).permutation(len(x)), k)
    per_fold = []
    for i in range(k):
        test = np.sort(folds[i])
        train = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i]))
        per_fold.append(fit_and_score(x, y, learned, train, test, xgb, mlp, seed, not_learned,
                                      lambda step, i=i: progress(f"fold {i + 1}/{k} {step}"))[1])
    out: dict[str, Any] = {}
    for model in per_fold[0]:
        out[model] = {}
        for m in per_fold[0][model]:
            values = [f[model][m] for f in per_fold if f[model][m] is not None]  # None: undefined in that fold
            out[model][m] = ({"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": len(values)}
                             if values else None)
    return out


@dataclass
class SurrogateFit:
    """A fitted surrogate with its quality report and the held-out predictions behind it."""

    predictor: SurrogatePredictor
    report: dict[str, Any]
    data: TrainingSet
    rows: Sequence[dict[str, Any]]
    test: np.ndarray
    fitted: dict[str, Fitted]
    """Every model of :data:`MODELS` the rows could make, by name, with its held-out predictions."""

    def uniform_features(self, n: int = 600) -> np.ndarray:
        """Feature vectors of uniform samples of the space under the campaign's largest parameter
        count (for the task the surrogate records), for the coverage plot."""
        from lightning_nas.space import sample

        task = self.predictor.meta.task or {}
        shape = tuple(task.get("input_shape") or (3, 32, 32))
        classes = int(task.get("num_classes") or 10)
        budget = max((int(r.get("n_params") or 0) for r in self.rows), default=0) or None
        archs = sample(min(n, max(2 * len(self.data.x), 100)), seed=self.predictor.meta.seed,
                       method="uniform", max_params=budget, in_shape=shape,
                       n_classes=classes)
        return np.asarray([a.feature_vector() for a in archs], dtype=np.float64)

    def save(self, directory: str | Path, progress: Progress = lambda step: None) -> list[Path]:
        """The predictor's files, ``report.json``, ``report.md`` and the held-out scatter plots, written as one set
        (staged, then moved into place: a failure leaves a previous surrogate there whole)."""
        directory = Path(directory)
        with staged_directory(directory) as stage, fit_threads():
            written = self.predictor.save(stage)
            (stage / "report.json").write_text(json.dumps(self.report, indent=2))
            (stage / "report.md").write_text(markdown_report(self.report, self.predictor.meta.std_floor,
                                                             self.predictor.meta.data))
            written += [stage / "report.json", stage / "report.md"]
            holdout = self.report["holdout"]
            for spec in (m for m in MODELS if m.plot):
                key, title, xlabel = spec.plot
                rows, predicted = self.fitted[spec.name].rows, self.fitted[spec.name].predicted
                shown = {k: holdout[spec.name][k] for k in ("kendall_tau", "r2") if k in holdout[spec.name]}
                if spec.learned_rows:
                    title += " (learned)"
                progress(f"plot {key}")
                written.append(scatter(np.asarray(predicted), self.data.y[spec.target][rows], title,
                                       stage / f"scatter_{key}.png", xlabel, shown))
            from lightning_nas.space import feature_names

            architecture = np.asarray(self.data.x)[:, : len(feature_names())]  # without the hardware features
            progress("coverage plot (t-SNE)")
            written.append(coverage_plot(architecture, self.uniform_features(), stage / "coverage.png"))
        return [directory / p.name for p in written]


def prediction_intervals(fitted: dict[str, Fitted], data: TrainingSet, floor: float) -> dict[str, Any]:
    """The shipped models' interval calibrations (:mod:`lightning_nas.surrogate.intervals`) from their
    held-out predictions, as the predictor makes them (std above its floor), with measured coverage."""
    out = {}
    for target in ("acc_1d", "avm", "std"):
        one = fitted[PREDICTOR_MODELS[target].name]
        predicted = np.maximum(one.predicted, floor) if target == "std" else np.asarray(one.predicted)
        measured = data.y[target][one.rows]
        keys = [data.archs[i].id for i in one.rows]
        out[target] = {**calibrate_intervals(predicted, measured), **measured_coverage(predicted, measured, keys)}
    return out


STD_FLOOR_PERCENTILE = 5


def std_floor(measured: np.ndarray) -> float:
    """The floor of predicted 1-day stds (pp): the 5th percentile of the stds the campaign measured
    over its programmings (at least 0.01 pp). A regressor can predict less, even below zero; the
    labels never showed it, so :meth:`SurrogatePredictor.predict` clips there and ``acc_over_std``
    divides by no less."""
    values = np.asarray(measured, dtype=np.float64)
    values = values[np.isfinite(values)]
    return round(max(float(np.percentile(values, STD_FLOOR_PERCENTILE)) if len(values) else 0.0, 0.01), 4)


def resolve_learned_threshold(threshold: Optional[float], task: Optional[dict[str, Any]]) -> float:
    """``threshold`` as given, or the default for the task's number of classes."""
    if threshold is not None:
        if not 0 <= threshold < 100:
            raise UserError(f"learned_threshold must be in [0, 100) (% accuracy at 1 s; 0 = every row), got {threshold}")
        return float(threshold)
    classes = (task or {}).get("num_classes")
    if not classes:
        raise UserError("the campaign records no task (number of classes) to derive learned_threshold from; give "
                        "learned_threshold (the % accuracy at 1 s an architecture must reach to count as learned; 0 = every row)")
    return default_learned_threshold(int(classes))


def fit_surrogate(rows: Sequence[dict[str, Any]], *, test_fraction: float = 0.2, kfold: int = 0, seed: int = 0,
                  xgb: XGBParams = XGBParams(), mlp: MLPParams = MLPParams(), source: str = "",
                  task: Optional[dict[str, Any]] = None, replicates: Sequence[dict[str, Any]] = (),
                  learned_threshold: Optional[float] = None, diverged: Sequence[dict[str, Any]] = (),
                  progress: Progress = lambda step: None) -> SurrogateFit:
    """Fit the surrogates on ``rows`` (status ``ok``) with a seeded held-out split by architecture id
    (:func:`split`; and k folds);
    with the campaign's ``replicates`` the report states the label-noise ceiling.
    ``task`` (:class:`lightning_nas.task.TaskInfo` as a dict) is recorded in the metadata.
    ``learned_threshold`` (% at 1 s, reached or exceeded; ``None``: :func:`default_learned_threshold` of the task's
    classes; 0: every row) says which rows learned: the AVM and std models use only those, and a
    classifier predicts the probability of learning. ``diverged`` (the campaign's rows whose training
    diverged) add to the classifier's training as architectures that did not learn. Every library
    fits on :func:`fit_threads`; ``progress`` hears of each of its :func:`fit_steps` but the files'.
    The report's ``warnings`` say when the held-out set is too small (:data:`MIN_HELD_OUT`)."""
    with fit_threads():
        return _fit_surrogate(rows, test_fraction, kfold, seed, xgb, mlp, source, task, replicates,
                              learned_threshold, diverged, progress)


def _fit_surrogate(rows, test_fraction, kfold, seed, xgb, mlp, source, task, replicates, learned_threshold,
                   diverged, progress) -> SurrogateFit:
    data = training_set(rows)
    check_kfold(kfold, len(data.x))
    threshold = resolve_learned_threshold(learned_threshold, task)
    learned = learned_mask(rows, threshold)
    y = {**data.y, **comparison_targets(rows)}
    train, test = split([a.id for a in data.archs], test_fraction, seed)
    not_learned = inputs(diverged)[1] if len(diverged) else None
    fitted, metrics = fit_and_score(data.x, y, learned, train, test, xgb, mlp, seed, not_learned, progress)
    report: dict[str, Any] = {"holdout": metrics, "n_train": int(len(train)), "n_test": int(len(test)),
                              "learned": {"threshold": threshold, "metric": LEARNED_METRIC, "rows": int(learned.sum()),
                                          "share": float(learned.mean()),
                                          "n_train": int(learned[train].sum()), "n_test": int(learned[test].sum()),
                                          "diverged_rows": len(diverged)},
                              "campaign": campaign_summary(rows)}
    report["warnings"] = small_held_out(report, test_fraction)
    if kfold:
        report["kfold"] = kfold_metrics(data.x, y, learned, kfold, xgb, mlp, seed, not_learned, progress)
        report["kfold_k"] = kfold
    floor = std_floor(data.y["std"][learned])
    intervals = prediction_intervals(fitted, data, floor)
    report["intervals"] = intervals
    analogs = sorted({json.dumps(r["analog"], sort_keys=True) for r in rows})
    classifier = fitted[PREDICTOR_MODELS["learned"].name]
    constant = None if classifier.model is not None else classifier.settings["share"]
    meta = SurrogateMeta(std_floor=floor, learned=Learned(threshold, LEARNED_METRIC, constant),
                         rows=len(rows), n_train=int(len(train)), data=source, seed=seed, split=SPLIT,
                         analog=json.loads(analogs[0]), analog_configs=len(analogs),
                         acc_1d_calibration=fitted[PREDICTOR_MODELS["acc_1d"].name].settings["calibration"],
                         xgb=asdict(xgb), mlp=asdict(mlp), mlp_hidden=mlp.hidden, metrics=report, task=task,
                         intervals=intervals)
    predictor = SurrogatePredictor({target: fitted[spec.name].model for target, spec in PREDICTOR_MODELS.items()},
                                   meta, mlp=fitted[MLP_MODEL.name].model)
    report["comparison"] = comparison_table(report["holdout"], report.get("kfold"))
    report["ceiling"] = with_ratios(label_ceiling(rows, replicates, learned=set(
        r["arch_id"] for r, ok in zip(rows, learned) if ok), threshold=threshold), report["holdout"])
    return SurrogateFit(predictor, report, data, rows, test, fitted)

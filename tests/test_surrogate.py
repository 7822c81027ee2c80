import json
from pathlib import Path

import numpy as np
import pytest

from lightning_nas.analog import AnalogConfig
from lightning_nas.campaign.store import RowStore, export
from lightning_nas.commands import fit_surrogate
from lightning_nas.surrogate import fitting
from lightning_nas.errors import UserError
from lightning_nas.space import Architecture, sample
from lightning_nas.surrogate import SurrogatePredictor
from lightning_nas.surrogate.data import comparison_targets, load_rows, training_set
from lightning_nas.surrogate.mlp import MLPParams
from lightning_nas.surrogate.models import XGBParams
from lightning_nas.surrogate.ceiling import format_ceiling
from lightning_nas.surrogate.report import models_table, ranking_quality, regression_quality

ANALOG = AnalogConfig().hardware_features()


def synthetic_rows(n=160, seed=0):
    """Rows whose metrics are known functions of the architecture (plus a little noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for arch in sample(n, seed=seed, method="uniform", max_params=300_000):
        depth = sum(s.R for s in arch.stages)
        width = arch.out_channel0 * np.prod([s.widenfact for s in arch.stages])
        acc = 80 + 2.0 * np.log(width) + 0.3 * depth + rng.normal(0, 0.05)
        avm = 0.5 + 0.05 * depth + rng.normal(0, 0.05)
        rows.append({"arch_id": arch.id, "arch": arch.to_dict(), "analog": ANALOG, "status": "ok",
                     "metrics": {"acc_1s": acc + 0.5, "acc_1d": acc, "acc_30d": acc + 0.5 - avm, "avm": avm,
                                 "acc_1d_std": 0.2 + 0.01 * depth}})
    return rows


def test_report_numbers_on_known_cases():
    true = np.array([1.0, 2.0, 3.0, 4.0])
    assert ranking_quality(true, true) == {"kendall_tau": 1.0, "spearman_rho": 1.0}
    assert ranking_quality(-true, true)["kendall_tau"] == -1.0
    r = regression_quality(true + 1.0, true)
    assert r["mae"] == 1.0 and r["r2"] == pytest.approx(1 - 4 / 5) and r["kendall_tau"] == 1.0
    swapped = ranking_quality(np.array([2.0, 1.0, 3.0, 4.0]), true)  # one discordant pair of six
    assert swapped["kendall_tau"] == pytest.approx(4 / 6)


@pytest.mark.slow
def test_surrogates_learn_a_known_function():
    x, y, archs = training_set(synthetic_rows())
    train, test = fitting.split([a.id for a in archs], 0.2, seed=0)
    assert len(test) == 32 and not set(train) & set(test)
    _, metrics = fitting.fit_and_score(x, y, np.ones(len(x), dtype=bool), train, test, XGBParams(),
                                       MLPParams(epochs=150), seed=0)
    assert metrics["xgb_acc_1d_ranker"]["kendall_tau"] > 0.75
    assert metrics["mlp_acc_1d_ranker"]["kendall_tau"] > 0.6
    assert metrics["xgb_avm_regressor"]["r2"] > 0.7
    assert metrics["xgb_std_regressor"]["r2"] > 0.7
    assert metrics["lgbm_acc_1d_regressor"]["kendall_tau"] > 0.6 and metrics["lgbm_avm_regressor"]["r2"] > 0.5


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "rows.sqlite"
    with RowStore(path) as store:
        for row in synthetic_rows(80):
            store.add(row)
        store.add({"arch_id": "bad", "status": "failed", "message": "x"})
    return path


@pytest.mark.slow
def test_fit_save_load_predict_round_trip(store_path, tmp_path, capsys):
    out = tmp_path / "sur"
    fit_surrogate.main(["--data", str(store_path), "--out_dir", str(out), "--mlp.epochs", "30", "--kfold", "3",
                        "--learned_threshold", "50"])
    printed = capsys.readouterr().out
    assert "| LightGBM regressors (held out) |" in printed and "| XGBoost pairwise ranker / regressors (k-fold) |" in printed
    for name in ("acc_1d_ranker.json", "avm_regressor.json", "std_regressor.json", "metadata.json",
                 "report.json", "report.md", "scatter_acc_1d.png", "scatter_avm.png", "scatter_std.png", "scatter_mlp.png",
                 "coverage.png"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "metadata.json").read_text())
    report, markdown = json.loads((out / "report.json").read_text()), (out / "report.md").read_text()
    acc = sorted(r["metrics"]["acc_1d"] for r in synthetic_rows(80))
    assert report["campaign"]["ok_rows"] == 80 and report["learned"]["diverged_rows"] == 0
    assert report["campaign"]["acc_1d"]["min"] == pytest.approx(acc[0]) and report["campaign"]["acc_1d"]["max"] == pytest.approx(acc[-1])
    assert "80 `ok` rows and 0 `diverged` ones; 80 of the `ok` rows learned (acc_1s >= 50 %)" in markdown
    ranker, kfold = report["holdout"]["xgb_acc_1d_ranker"], report["kfold"]["xgb_acc_1d_ranker"]
    assert (f"| XGBoost ranker, 1-day accuracy | tau {ranker['kendall_tau']:.3f}, rho {ranker['spearman_rho']:.3f}, "
            f"calibrated MAE {ranker['mae_calibrated']:.3f} pp | tau {kfold['kendall_tau']['mean']:.3f} +- "
            f"{kfold['kendall_tau']['std']:.3f}, rho {kfold['spearman_rho']['mean']:.3f} +- "
            f"{kfold['spearman_rho']['std']:.3f}, calibrated MAE {kfold['mae_calibrated']['mean']:.3f} +- "
            f"{kfold['mae_calibrated']['std']:.3f} pp |") in markdown.splitlines()
    assert "Held out: 16 of 80 rows and 3-fold cross-validation" in markdown and report["comparison"] in markdown
    # the command prints the tables report.md holds: the same models table, comparison and ceiling
    table = models_table(report["holdout"], report["kfold"])
    assert table in markdown and table in printed and report["comparison"] in printed
    assert format_ceiling(report["ceiling"]) in printed and "| model | held out | k-fold (mean +- std) |" in printed
    assert f"models (held out: {report['n_test']} rows; 3-fold cross-validation):" in printed
    assert meta["split"] == fitting.SPLIT
    assert f"floor {meta['std_floor']:g} pp" in markdown and "no replicates in this campaign" in markdown
    assert meta["rows"] == 80 and meta["n_train"] == 64  # the failed row is not used
    predictor = SurrogatePredictor.load(out)
    archs = sample(5, seed=99)
    pred = predictor.predict(archs)
    intervals = {f"{k}_{side}" for k in ("acc_1d", "avm", "std") for side in ("low", "high")}
    assert set(pred) == {"acc_1d", "avm", "std", "p_learned", "acc_1d_score", *intervals}
    assert all(v.shape == (5,) for v in pred.values())
    for k in ("acc_1d", "avm", "std"):  # each point prediction inside its 80 % interval
        assert (pred[f"{k}_low"] <= pred[k] + 1e-9).all() and (pred[k] <= pred[f"{k}_high"] + 1e-9).all()
    assert meta["learned"] == {"threshold": 50.0, "metric": "acc_1s", "constant": 1.0}  # every row learned
    assert (pred["p_learned"] == 1.0).all() and not (out / "learned_classifier.json").exists()
    again = SurrogatePredictor.load(out).predict(archs)
    assert all(np.array_equal(pred[k], again[k]) for k in pred)
    x, y, stored_archs = training_set(load_rows(store_path))
    fit = predictor.predict(stored_archs)
    assert np.corrcoef(fit["acc_1d"], y["acc_1d"])[0, 1] > 0.9  # calibrated onto accuracy %
    assert abs(fit["acc_1d"].mean() - y["acc_1d"].mean()) < 1.0
    assert pred["acc_1d"].max() <= y["acc_1d"].max() + 0.1  # no extrapolation beyond the measured range
    assert meta["std_floor"] == pytest.approx(max(np.percentile(y["std"], 5), 0.01), abs=1e-4)
    wide = predictor.predict(sample(300, seed=7, in_shape=(3, 32, 32)))
    assert wide["std"].min() >= meta["std_floor"]  # never below the floor the labels showed


def test_a_small_campaign_is_fitted_with_a_warning_progress_and_no_library_warnings(tmp_path, capfd):
    """12 rows hold out 2: the command says, in one line with the numbers, that the held-out metrics
    can't be trusted (also in report.md and report.json), shows its steps in a progress bar, and no
    library warning (scipy's constant-input one, xgboost's, scikit-learn's) reaches the user."""
    import warnings

    path = tmp_path / "small.sqlite"
    with RowStore(path) as store:
        for row in synthetic_rows(12):
            store.add(row)
    out = tmp_path / "sur"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning a user would see fails the test
        warnings.simplefilter("ignore", DeprecationWarning)  # hidden outside __main__ (Python's default)
        fit_surrogate.main(["--data", str(path), "--out_dir", str(out), "--mlp.epochs", "5", "--learned_threshold", "0"])
    captured = capfd.readouterr()
    text = captured.out + captured.err
    warned = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "only 2 held-out rows" in warned[0] and "standard error of 1.00" in warned[0]
    assert f"at least {fitting.MIN_HELD_OUT}" in warned[0] and "about 100 campaign rows at test_fraction 0.2" in warned[0]
    assert "Warning" not in text.replace("**Warning:**", "") and "ConstantInput" not in text
    steps = fitting.fit_steps(0)
    assert f"{steps}/{steps}" in captured.err and "coverage plot (t-SNE)" in captured.err  # the bar, to its end
    report = json.loads((out / "report.json").read_text())
    assert report["warnings"] == [warned[0][len("warning: "):]]
    assert f"**Warning:** {report['warnings'][0]}." in (out / "report.md").read_text()


def test_held_out_sets_of_trustworthy_size_give_no_warning():
    report = {"n_test": 20, "learned": {"n_test": 20}}
    assert fitting.small_held_out(report, 0.2) == []
    report["learned"]["n_test"] = 8  # enough rows, too few that learned
    (warning,) = fitting.small_held_out(report, 0.2)
    assert warning.startswith("only 8 held-out rows that learned (AVM, std)")
    assert fitting.tau_standard_error(20) == pytest.approx(0.162, abs=1e-3)
    assert fitting.tau_standard_error(2) == pytest.approx(1.0) and fitting.tau_standard_error(1) == float("inf")


def test_rank_correlations_of_constant_values_are_undefined_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for pred, true in (([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]), ([1.0], [2.0])):
            q = ranking_quality(np.asarray(pred), np.asarray(true))
            assert np.isnan(q["kendall_tau"]) and np.isnan(q["spearman_rho"])
    assert ranking_quality(np.asarray([1.0, 2.0, 3.0]), np.asarray([3.0, 2.0, 1.0]))["kendall_tau"] == pytest.approx(-1)


def test_csv_export_is_accepted_as_surrogate_data(store_path, tmp_path):
    with RowStore(store_path) as store:
        csv_path = export(store.rows(), tmp_path / "rows.csv")
    a, b = load_rows(csv_path), load_rows(store_path)
    assert [Architecture.from_dict(r["arch"]) for r in a] == [Architecture.from_dict(r["arch"]) for r in b]
    assert training_set(a)[0].tolist() == training_set(b)[0].tolist()
    # every drift metric and the ids come back, so the CSV can be fitted like the store (learned rows
    # need acc_1s, the ceiling needs arch ids)
    assert [(r["arch_id"], r["metrics"]) for r in a] == [(r["arch_id"], r["metrics"]) for r in b]
    fit_surrogate.main(["--data", str(csv_path), "--out_dir", str(tmp_path / "sur"), "--mlp.epochs", "5",
                        "--learned_threshold", "50"])
    assert (tmp_path / "sur" / "metadata.json").is_file()


@pytest.mark.slow
def test_feature_or_space_mismatch_is_a_clear_error(store_path, tmp_path):
    out = tmp_path / "sur"
    fit_surrogate.main(["--data", str(store_path), "--out_dir", str(out), "--mlp.epochs", "5",
                        "--learned_threshold", "50"])
    meta = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps({**meta, "feature_names": meta["feature_names"][:-1]}))
    with pytest.raises(UserError, match="other features"):
        SurrogatePredictor.load(out)
    (out / "metadata.json").write_text(json.dumps({**meta, "space_version": "0"}))
    with pytest.raises(UserError, match="search-space version 0"):
        SurrogatePredictor.load(out)
    with pytest.raises(UserError, match="no surrogate"):
        SurrogatePredictor.load(tmp_path)


def test_held_out_rows_stay_held_out_as_the_campaign_grows():
    """The split hashes each architecture id: adding rows moves at most the few at the boundary
    (a seeded permutation re-drew the whole test set with every new row)."""
    ids = [f"arch{i:04d}" for i in range(600)]
    train, test = fitting.split(ids[:500], 0.2, seed=0)
    assert len(test) == 100 and len(train) == 400 and set(train) | set(test) == set(range(500))
    assert list(test) == sorted(test) and not set(train) & set(test)
    grown = fitting.split(ids, 0.2, seed=0)[1]
    before, after = {ids[i] for i in test}, {ids[i] for i in grown}
    # nested up to the boundary: the held-out rows stay held out, the training rows stay training rows
    assert len(after) == 120 and len((after & set(ids[:500])) ^ before) <= 10
    assert fitting.split(list(reversed(ids[:500])), 0.2, seed=0)[1].tolist() == sorted(499 - test)  # order-free
    assert {ids[i] for i in fitting.split(ids[:500], 0.2, seed=1)[1]} != before  # the seed draws another split
    assert [len(part) for part in fitting.split(["a", "b"], 0.01, 0)] == [1, 1]  # at least one row each side
    assert [len(part) for part in fitting.split(["a", "b", "c"], 0.99, 0)] == [1, 2]


def test_missing_data_and_bad_options(run_cli, tmp_path):
    proc = run_cli("fit-surrogate", "--data", str(tmp_path / "none.sqlite"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(UserError, match="test_fraction"):
        fitting.split([str(i) for i in range(10)], 1.5, 0)


def test_a_surrogate_of_a_hardware_sampling_campaign_answers_for_each_chip():
    """Rows whose accuracy falls with the output noise they were drawn with: the surrogate takes
    the hardware as inputs, so asking for a noisier chip predicts lower accuracy."""
    rng = np.random.default_rng(0)
    rows = []
    for row in synthetic_rows(200):
        noise = float(rng.uniform(0.0, 0.1))
        row = {**row, "analog": {**row["analog"], "out_noise": noise},
               "metrics": {**row["metrics"], "acc_1d": row["metrics"]["acc_1d"] - 100 * noise}}
        rows.append(row)
    fit = fitting.fit_surrogate(rows, xgb=XGBParams(), mlp=MLPParams(epochs=5), learned_threshold=50)
    archs = sample(50, seed=11, method="uniform", max_params=300_000)
    quiet = fit.predictor.predict(archs, analog={**ANALOG, "out_noise": 0.01})
    noisy = fit.predictor.predict(archs, analog={**ANALOG, "out_noise": 0.09})
    assert (noisy["acc_1d"] < quiet["acc_1d"]).mean() > 0.9


def test_label_ceiling_from_replicates():
    from lightning_nas.surrogate.ceiling import icc1, label_ceiling

    rng = np.random.default_rng(3)
    rows, replicates = [], []
    for k, row in enumerate(synthetic_rows(60)):
        row = {**row, "status": "ok", "seed": 0}
        rows.append(row)
        for seed in (1, 2):  # acc_1d repeats exactly, AVM is the row's plus noise, std pure noise
            metrics = {"acc_1d": row["metrics"]["acc_1d"], "avm": row["metrics"]["avm"] + rng.normal(0, 0.01),
                       "acc_1d_std": float(rng.normal(1.0, 0.3))}
            replicates.append({**row, "seed": seed, "metrics": metrics})
    ceiling = label_ceiling(rows, replicates)
    assert ceiling["architectures"] == 60 and ceiling["seeds"] == [1, 2]
    assert ceiling["acc_1d"]["seed_to_seed_tau"] == pytest.approx(1.0)
    assert ceiling["avm"]["icc"] > 0.9 and ceiling["avm"]["seed_to_seed_tau"] > 0.7
    assert abs(ceiling["std"]["seed_to_seed_tau"]) < 0.25 and ceiling["std"]["icc"] < 0.3
    assert icc1(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])) == pytest.approx(1.0)
    assert label_ceiling(rows, []) == {}
    # With a learned threshold, an architecture whose replicate stayed at chance (its AVM is noise)
    # leaves the AVM and std ceiling; acc_1d keeps every architecture.
    for r in replicates:
        r["metrics"]["acc_1s"] = r["metrics"]["acc_1d"]
    failed = replicates[0]
    failed["metrics"].update(acc_1s=10.0, avm=float(rng.normal(0, 50)))
    everyone = {r["arch_id"] for r in rows}
    noisy = label_ceiling(rows, replicates, learned=everyone)
    ceiling = label_ceiling(rows, replicates, learned=everyone, threshold=32.5)
    assert noisy["avm"]["architectures"] == 60 and ceiling["avm"]["architectures"] == ceiling["std"]["architectures"] == 59
    assert ceiling["acc_1d"]["architectures"] == 60 and ceiling["avm"]["icc"] > 0.9 > noisy["avm"]["icc"]


def test_markdown_tables_of_the_report():
    from lightning_nas.surrogate.report import campaign_summary, markdown_report

    ceiling = {"architectures": 40, "seeds": [1, 2],
               "acc_1d": {"seed_to_seed_tau": 0.8, "architectures": 40, "model_tau": 0.76, "ratio": 0.95},
               "avm": {"seed_to_seed_tau": 0.5, "architectures": 20, "icc": 0.61, "model_tau": 0.55, "ratio": 1.1}}
    table = format_ceiling(ceiling)
    assert table.startswith("label-noise ceiling (40 architectures, replicate seeds 1, 2)")
    assert "| acc_1d | 0.76 | 0.80 | 0.95 | - | 40 |" in table and "| avm | 0.55 | 0.50 | 1.10 | 0.61 | 20 |" in table
    assert "| std | fewer than 3 replicated architectures learned |" in table
    undefined = {**ceiling, "acc_1d": {"seed_to_seed_tau": float("nan"), "architectures": 40, "ratio": None}}
    assert "| acc_1d | - | - | - | - | 40 |" in format_ceiling(undefined)
    assert "no replicates in this campaign" in format_ceiling({})
    holdout = {"xgb_avm_regressor": {"mae": 1.5, "r2": float("nan"), "kendall_tau": 0.5},
               "xgb_learned_classifier": {"auc": None, "accuracy": 1.0, "brier": 0.0, "base_rate": 1.0}}
    kfold = {"xgb_avm_regressor": {"mae": {"mean": 2.0, "std": 0.5, "folds": 3}, "r2": None,
                                   "kendall_tau": {"mean": 0.4, "std": 0.1, "folds": 3}}}
    rows = models_table(holdout, kfold).splitlines()
    assert rows[2] == ("| XGBoost regressor, AVM (learned rows) | MAE 1.500 pp, R^2 n/a, tau 0.500 | "
                       "MAE 2.000 +- 0.500 pp, R^2 n/a, tau 0.400 +- 0.100 |")
    assert rows[3].startswith("| XGBoost classifier, learned or not (every row) | ROC AUC n/a, accuracy 1.000") and rows[3].endswith("| - |")
    assert len(rows) == 4 and models_table(holdout).splitlines()[0] == "| model | held out |"

    ok = [{"metrics": {"acc_1d": float(a)}, "wall_s": 1800.0} for a in (10, 20, 30, 40, 50)] + [{"metrics": {"acc_1d": 60.0}}]
    campaign = campaign_summary(ok)
    assert campaign["acc_1d"] == {"min": 10.0, "q1": 22.5, "median": 35.0, "q3": 47.5, "max": 60.0}
    assert campaign["wall_s_sum"] == 9000.0 and campaign["wall_s_rows"] == 5 and campaign["ok_rows"] == 6
    report = {"holdout": holdout, "kfold": kfold, "kfold_k": 3, "n_train": 4, "n_test": 2, "campaign": campaign,
              "learned": {"threshold": 0.0, "rows": 6, "n_train": 4, "n_test": 2, "diverged_rows": 2},
              "comparison": "| learner | acc_1d tau |", "ceiling": ceiling}
    text = markdown_report(report, 0.25, "rows.sqlite")
    assert ("6 `ok` rows and 2 `diverged` ones; 6 of the `ok` rows learned (learned_threshold 0: every row counts). "
            "1-day accuracy of the `ok` rows: min 10.0 %, quartiles 22.5 / 35.0 / 47.5 %, max 60.0 %; training and "
            "evaluation took 2.50 h of worker time (sum of `wall_s` over 5 rows).") in text
    assert "Held out: 2 of 6 rows and 3-fold cross-validation;" in text and "floor 0.25 pp" in text
    assert table in text and "| learner | acc_1d tau |" in text and rows[2] in text.splitlines()


def test_avm_from_a_predicted_drift_slope_is_compared():
    """Item 2 of issue 14: AVM predicted directly, as the difference of two predicted accuracies, or
    from a predicted slope of accuracy over log time (all drift times); the report compares them."""
    rng = np.random.default_rng(2)
    rows = synthetic_rows(200, seed=2)
    for row in rows:  # accuracy falls linearly in log10(t), at a rate set by the depth (plus noise)
        arch = Architecture.from_dict(row["arch"])
        slope = -0.2 - 0.05 * sum(s.R for s in arch.stages)
        acc = {t: 95.0 + slope * np.log10(t) + rng.normal(0, 0.05) for t in (1, 3600, 86400, 2592000)}
        row["metrics"].update(acc_1s=acc[1], acc_1h=acc[3600], acc_1d=acc[86400], acc_30d=acc[2592000],
                              avm=acc[1] - acc[2592000])
    targets = comparison_targets(rows)
    assert targets["avm_per_slope"][0] == pytest.approx(-np.log10(2592000))
    truth = np.array([r["metrics"]["avm"] for r in rows])
    assert np.corrcoef(targets["drift_slope"] * targets["avm_per_slope"], truth)[0, 1] > 0.99
    fit = fitting.fit_surrogate(rows, xgb=XGBParams(), mlp=MLPParams(epochs=5), learned_threshold=0)
    via_slope = fit.report["holdout"]["xgb_avm_from_drift_slope"]
    assert via_slope["kendall_tau"] > 0.6 and via_slope["r2"] > 0.8
    assert "XGBoost regressor of the drift slope" in fit.report["comparison"]
    two_times = [{**r, "metrics": {k: v for k, v in r["metrics"].items() if k not in ("acc_1h", "acc_1d")}}
                 for r in rows[:3]]
    assert "drift_slope" not in comparison_targets(two_times)  # two times: no slope to compare
    from_zero = [{**r, "metrics": {**{k: v for k, v in r["metrics"].items() if k != "acc_1s"}, "acc_0s": 95.0}}
                 for r in rows[:3]]
    assert "drift_slope" not in comparison_targets(from_zero)  # a drift time of 0 s: no logarithm, no slope


def test_trainability_is_separated_from_robustness(tmp_path, capsys):
    """Architectures that did not learn (here: the narrow ones, at chance with an AVM of pure noise)
    carry no drift information: the AVM model is fitted and scored on the learned rows only, and a
    classifier predicts which architectures learn."""
    rng = np.random.default_rng(5)
    rows = []
    for row in synthetic_rows(240, seed=5):
        arch = Architecture.from_dict(row["arch"])
        if arch.out_channel0 <= 16:  # does not learn: chance accuracy, noise for AVM and std
            avm = rng.normal(0, 8)
            row["metrics"] = {"acc_1s": 10 + rng.normal(0, 1), "acc_1d": 10 + rng.normal(0, 1), "avm": avm,
                              "acc_30d": 10 - avm, "acc_1d_std": abs(rng.normal(0, 3))}
        rows.append(row)
    learned = np.array([r["metrics"]["acc_1s"] >= 32.5 for r in rows])
    assert 0.2 < learned.mean() < 0.8
    task = {"name": "digits", "num_classes": 10}
    fit = fitting.fit_surrogate(rows, xgb=XGBParams(), mlp=MLPParams(epochs=5), task=task)
    report = fit.report
    assert report["learned"]["threshold"] == 32.5 and report["learned"]["rows"] == int(learned.sum())
    assert report["holdout"]["xgb_learned_classifier"]["auc"] > 0.95
    assert report["holdout"]["xgb_avm_regressor"]["r2"] > 0.5  # on learned rows only
    via_ends = report["holdout"]["xgb_avm_from_acc_1s_minus_acc_30d"]  # the other way to predict AVM
    assert via_ends["kendall_tau"] > 0.3 and "AVM as their difference" in report["comparison"]
    mixed = fitting.fit_surrogate(rows, xgb=XGBParams(), mlp=MLPParams(epochs=5), task=task, learned_threshold=0)
    assert mixed.report["holdout"]["xgb_avm_regressor"]["r2"] < 0.2  # the chance rows' noise dominates
    out = tmp_path / "sur"
    import matplotlib

    matplotlib.use("svg")  # a caller's backend (a notebook's inline one): writing the scatter plots keeps it
    fit.save(out)
    assert matplotlib.get_backend() == "svg" and (out / "scatter_acc_1d.png").stat().st_size > 1000
    predictor = SurrogatePredictor.load(out)
    narrow = [a for a in sample(200, seed=8, method="uniform", max_params=300_000) if a.out_channel0 <= 12][:20]
    wide = [a for a in sample(200, seed=8, method="uniform", max_params=300_000) if a.out_channel0 >= 32][:20]
    assert predictor.predict(narrow)["p_learned"].max() < 0.2 < 0.8 < predictor.predict(wide)["p_learned"].min()
    with pytest.raises(UserError, match="learned_threshold"):
        fitting.fit_surrogate(rows, xgb=XGBParams(), mlp=MLPParams(epochs=5))  # no task: no default threshold
    with pytest.raises(UserError, match="training rows learned"):
        fitting.fit_surrogate(rows, xgb=XGBParams(), mlp=MLPParams(epochs=5), learned_threshold=99)
    meta = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "learned"}))
    with pytest.raises(UserError, match="predates"):
        SurrogatePredictor.load(out)


def test_diverged_rows_teach_the_classifier_which_architectures_do_not_learn(tmp_path):
    """A campaign row whose training diverged (NaN loss) has no metrics but says the architecture did
    not learn: fit-surrogate reads those rows from the store and the learned classifier trains on them."""
    from lightning_nas.campaign.store import RowStore
    from lightning_nas.surrogate.data import load_rows

    rows = synthetic_rows(200, seed=3)  # every one of them learned (acc_1s > 80 %)
    narrow = [r for r in rows if Architecture.from_dict(r["arch"]).out_channel0 <= 16]
    assert 0.2 < len(narrow) / len(rows) < 0.8
    with RowStore(tmp_path / "rows.sqlite") as store:
        for r in rows:
            if r in narrow:  # the narrow ones diverged: no metrics
                r = {k: v for k, v in r.items() if k != "metrics"} | {"status": "diverged", "message": "loss is nan"}
            store.add(r)
    ok, diverged = load_rows(tmp_path / "rows.sqlite"), load_rows(tmp_path / "rows.sqlite", status="diverged")
    assert len(ok) + len(diverged) == len(rows) and len(diverged) == len(narrow)
    without = fitting.fit_surrogate(ok, xgb=XGBParams(), mlp=MLPParams(epochs=5), learned_threshold=50)
    fit = fitting.fit_surrogate(ok, xgb=XGBParams(), mlp=MLPParams(epochs=5), learned_threshold=50, diverged=diverged)
    assert without.predictor.meta.learned.constant == 1.0  # all ok rows learned: nothing to tell apart
    assert fit.report["learned"]["diverged_rows"] == len(narrow) and fit.predictor.meta.learned.constant is None
    unseen = sample(300, seed=9, method="uniform", max_params=300_000)
    p_narrow = fit.predictor.predict([a for a in unseen if a.out_channel0 <= 12][:20])["p_learned"]
    p_wide = fit.predictor.predict([a for a in unseen if a.out_channel0 >= 32][:20])["p_learned"]
    assert p_narrow.max() < 0.2 and p_wide.min() > 0.8


SHIPPED = Path(__file__).resolve().parents[1] / "surrogates" / "digits"


def test_the_shipped_metadata_loads_as_a_typed_record_and_writes_back_unchanged(tmp_path):
    """metadata.json of the shipped surrogate reads into SurrogateMeta (what the predictor and the
    search use) and writes back as the same JSON: the format is unchanged."""
    from lightning_nas.surrogate.meta import Learned, SurrogateMeta

    meta = SurrogateMeta.read(SHIPPED)
    assert meta.learned == Learned(32.5, "acc_1s", None) and meta.std_floor == 0.3924 and meta.split == fitting.SPLIT
    assert meta.task["name"] == "digits" and meta.tile_size == 512 and meta.extra == {}
    assert set(meta.prediction_errors()) == {"acc_1d", "avm", "std"} and 1.8 < meta.prediction_errors()["avm"] < 1.9  # recentred
    text = (SHIPPED / "metadata.json").read_text()
    assert json.dumps(meta.to_json(), indent=2) == json.dumps(json.loads(text), indent=2)
    assert meta.write(tmp_path).read_text() == text
    assert SurrogatePredictor.load(SHIPPED).meta == meta
    # an older file without the fields added since (std floor, split, task) and with one this version
    # does not know still loads, and keeps the unknown one
    old = {k: v for k, v in json.loads(text).items() if k not in ("std_floor", "split", "task")} | {"note": "x"}
    (tmp_path / "metadata.json").write_text(json.dumps(old))
    read = SurrogateMeta.read(tmp_path)
    assert read.std_floor is None and read.split is None and read.task is None and read.extra == {"note": "x"}


@pytest.mark.parametrize("key, value", [("std_floor", "low"), ("task", [1, 8, 8]), ("rows", 1.5), ("metrics", "x"),
                                        ("data", 3), ("learned", {"constant": 2.0}),
                                        ("intervals", {"avm": {"level": 0.8, "edges": [1.0], "low": [-1.0], "high": [1.0]}})])
def test_a_malformed_metadata_field_is_one_clear_error(tmp_path, key, value):
    from lightning_nas.surrogate.meta import SurrogateMeta

    (tmp_path / "metadata.json").write_text(json.dumps({**json.loads((SHIPPED / "metadata.json").read_text()),
                                                        key: value}))
    with pytest.raises(UserError, match=f"surrogate {tmp_path}: metadata.json .*{key}.*rebuild it with fit-surrogate") as err:
        SurrogateMeta.read(tmp_path)
    assert "\n" not in str(err.value)


def test_a_custom_predictors_meta_is_read_as_a_partial_metadata():
    """The search reads the same fields from a custom predictor's ``meta`` dict (what it records of
    them), checked all the same; a predictor without one records nothing."""
    from lightning_nas.surrogate.meta import SurrogateMeta

    floored = type("Floored", (), {"meta": {"std_floor": 0.7, "analog": {**ANALOG, "tile_size": 256}}})()
    meta = SurrogateMeta.of(floored)
    assert meta.std_floor == 0.7 and meta.tile_size == 256 and meta.task is None and meta.prediction_errors() == {}
    assert SurrogateMeta.of(object()) is None and SurrogateMeta.of(type("P", (), {"meta": "text"})()) is None
    with pytest.raises(UserError, match="predictor Bad: its meta has a std_floor that is not a number"):
        SurrogateMeta.of(type("Bad", (), {"meta": {"std_floor": "x"}})())


def test_model_names_are_spelled_once():
    """Fitting, the report, the files and the search all take the models from specs.MODELS: no other
    module spells a model's name or file."""
    from lightning_nas.surrogate.specs import MODELS, PREDICTOR_MODELS

    names, files = [m.name for m in MODELS], [m.file for m in MODELS if m.file]
    assert len(set(names)) == len(names) and len(set(files)) == len(files)
    assert list(PREDICTOR_MODELS) == ["acc_1d", "avm", "std", "learned"]
    package = Path(__file__).resolve().parents[1] / "lightning_nas"
    for path in package.rglob("*.py"):
        if path.name != "specs.py":
            text = path.read_text()
            assert not [n for n in names + files if f'"{n}"' in text], path


def test_comparison_of_learners_rows():
    """One row per learner (specs' ``compared_as``) with its models in their target's column; a
    comparison the rows could not make is left out."""
    from lightning_nas.surrogate.report import comparison_table
    from lightning_nas.surrogate.specs import MODELS

    holdout = {m.name: {"kendall_tau": 0.5, "r2": 0.25} for m in MODELS if not m.via}
    lines = comparison_table(holdout).splitlines()
    assert lines[2:] == ["| XGBoost pairwise ranker / regressors (held out) | 0.50 | 0.50 / 0.25 | 0.50 / 0.25 |",
                         "| MLP pairwise hinge ranker (held out) | 0.50 | - | - |",
                         "| LightGBM regressors (held out) | 0.50 | 0.50 / 0.25 | 0.50 / 0.25 |"]
    holdout["xgb_avm_from_drift_slope"] = {"kendall_tau": 0.6, "r2": 0.5}
    assert comparison_table(holdout).splitlines()[-1].endswith("AVM as -slope x decades (held out) | - | 0.60 / 0.50 | - |")


# -- prediction intervals (lightning_nas.surrogate.intervals) ---------------------------------------

def test_conformal_intervals_cover_new_rows_at_their_level_and_follow_the_predictions_bias():
    """Held-out residuals calibrate the intervals; on fresh rows from the same distribution they hold
    about 80 % of the measured labels. Per bin of the prediction: where predictions run low (the
    low-prediction bin here, as AVM in the selected region), the interval is shifted up."""
    from lightning_nas.surrogate.intervals import calibrate_intervals, interval, measured_coverage, recentred

    rng = np.random.default_rng(0)

    def draw(n):
        predicted = rng.uniform(0, 10, n)
        bias = np.where(predicted < 3.3, 1.5, 0.0)  # underpredicted at low predictions
        return predicted, predicted + bias + rng.normal(0, 0.3 + 0.2 * predicted, n)  # noisier higher up

    p, y = draw(300)
    cal = calibrate_intervals(p, y)
    assert len(cal["edges"]) == 2 and cal["level"] == 0.8
    centre = [(lo + hi) / 2 for lo, hi in zip(cal["low"], cal["high"])]
    assert centre[0] > centre[1] + 0.7 and cal["high"][0] > 1.5  # the low bin's interval is shifted up
    assert cal["high"][2] - cal["low"][2] > 2 * (cal["high"][0] - cal["low"][0])  # wider where noisier
    fresh_p, fresh_y = draw(20000)
    lo, hi = interval(fresh_p, cal)
    assert 0.75 < np.mean((fresh_y >= lo) & (fresh_y <= hi)) < 0.87
    low_bin = fresh_p < cal["edges"][0]
    assert np.mean(fresh_y[low_bin] - fresh_p[low_bin]) > 1.2  # the model's own points: biased there
    assert abs(np.mean(fresh_y[low_bin] - recentred(fresh_p, cal)[low_bin])) < 0.35  # recentred: not any more
    assert np.array_equal(recentred(fresh_p, {k: v for k, v in cal.items() if k != "shift"}), fresh_p)  # older
    measured = measured_coverage(p, y, [str(i) for i in range(len(p))])
    assert 0.7 < measured["coverage"] < 0.9 and measured["rows"] == 300 and measured["width"] > 0
    few = calibrate_intervals(p[:30], y[:30])  # too few rows for three bins: one
    assert few["edges"] == [] and len(few["low"]) == 1


def test_the_shipped_surrogate_predicts_intervals_and_the_search_can_constrain_and_pick_by_them(tmp_path, capsys):
    from lightning_nas.commands import search as search_cmd
    from lightning_nas.surrogate.meta import SurrogateMeta

    predictor = SurrogatePredictor.load(SHIPPED)
    archs = sample(200, seed=3, max_params=100_000, in_shape=(1, 8, 8), n_classes=10)
    p = predictor.predict(archs)
    for label in ("acc_1d", "avm", "std"):
        assert np.all(p[f"{label}_low"] <= p[f"{label}_high"]) and np.ptp(p[f"{label}_high"] - p[f"{label}_low"]) > 0
    meta = SurrogateMeta.read(SHIPPED)
    from lightning_nas.surrogate.data import feature_matrix
    from lightning_nas.surrogate.intervals import recentred

    raw = predictor.models["avm"].predict(feature_matrix(archs, meta.analog)).astype(float)
    assert np.allclose(p["avm"], recentred(raw, meta.intervals["avm"])) and not np.allclose(p["avm"], raw)
    assert meta.intervals["avm"]["shift"][0] > 0.3  # low predicted AVM measures higher: moved up
    assert meta.intervals["avm"]["mae_recentred"] < meta.intervals["avm"]["mae_raw"]
    assert all(0.7 < meta.intervals[t]["coverage"] < 0.9 for t in ("acc_1d", "avm", "std"))
    args = ["--predictor", str(SHIPPED), "--task", "digits", "--out_dir", str(tmp_path / "s"),
            "--search.population", "40", "--search.iterations", "8", "--search.survivors", "30",
            "--search.max_params", "100000", "--search.objectives", "[acc_1d, avm]", "--baseline_random", "false",
            "--search.constraints", "[{name: avm_high, max: 2.0}]", "--search.pick_by", "acc_1d_low"]
    search_cmd.main(args)
    import csv

    history = list(csv.DictReader((tmp_path / "s" / "history.csv").open()))
    feasible = [r for r in history if r["feasible"] == "True"]
    assert feasible and all(float(r["avm_high"]) <= 2.0 for r in feasible)
    assert any(float(r["avm_high"]) > 2.0 >= float(r["pred_avm"]) for r in history)  # the bound, not the point, decided
    import yaml

    winners = [yaml.safe_load(f.read_text()) for f in sorted((tmp_path / "s" / "winners").glob("winner_*.yaml"))]
    best_low = sorted(feasible, key=lambda r: -float(r["acc_1d_low"]))[:3]
    assert [w["arch_id"] for w in winners] == [r["arch_id"] for r in best_low]
    # A surrogate fitted before intervals: a constraint on a bound says to refit it.
    old = tmp_path / "old"
    old.mkdir()
    for f in SHIPPED.iterdir():
        if f.suffix in (".json", ".pt"):
            (old / f.name).write_bytes(f.read_bytes())
    data = json.loads((old / "metadata.json").read_text())
    del data["intervals"]
    (old / "metadata.json").write_text(json.dumps(data))
    assert "avm_high" not in SurrogatePredictor.load(old).predict(archs[:2])
    args[1] = str(old)
    with pytest.raises(UserError, match="no such output .*refit it with fit-surrogate"):
        search_cmd.main(args)

"""Cheaper rungs and successive halving in build-dataset (lightning_nas.campaign.fidelity)."""

import hashlib
import json
import sqlite3

import pytest
from conftest import ROOT, load_file

from lightning_nas.campaign import train as train_mod
from lightning_nas.campaign.fidelity import Fidelity, label, promoted
from lightning_nas.campaign.store import RowStore
from lightning_nas.commands import build_dataset
from lightning_nas.errors import UserError

RUNGS = '[{epochs: 1, n_reps: 1}, {epochs: 2, n_reps: 1}]'


def args(tmp_path, n=9, *extra, store="rows.sqlite"):
    return ["--data.class_path", "lightning_nas.data.DigitsDataModule", "--data.init_args.batch_size", "64",
            "--sampling.n", str(n), "--sampling.max_params", "20000", "--sampling.method", "uniform",
            "--store", str(tmp_path / store), "--campaign_dir", "null", "--workers", "0",
            "--budget.epochs", "3", "--budget.limit_train_batches", "2", "--budget.n_reps", "2",
            "--fidelity.rungs", RUNGS, "--fidelity.eta", "3", *extra]


def fake_accuracy(arch_id, epochs):
    """A made-up accuracy that depends on the architecture and the rung (so promotions differ per rung)."""
    return int(hashlib.sha256(f"{arch_id}:{epochs}".encode()).hexdigest()[:6], 16) % 1000 / 10


class Recorder:
    """Stands in for training: records each job, returns a row with the fake accuracy; with
    ``stop_after`` it interrupts the campaign (as Ctrl-C or a kill would) at that call."""

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = [], stop_after

    def __call__(self, job):
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise KeyboardInterrupt
        epochs = job.config["trainer"]["max_epochs"]
        self.calls.append((job.arch_id, epochs, job.config["drift"]["n_reps"], json.dumps(job.fidelity)))
        row = train_mod.base_row(job)
        row["metrics"] = {"acc_1d": fake_accuracy(job.arch_id, epochs), "avm": 0.0}
        return train_mod.Row(**row)


def stored(path):
    with RowStore(path, readonly=True) as store:
        return ({(r["arch_id"], label(r["fidelity"])): r for r in store.fidelity_rows()},
                {r["arch_id"]: r for r in store.rows()})


def test_successive_halving_promotes_the_best_third_of_each_rung(tmp_path, monkeypatch, capsys):
    recorder = Recorder()
    monkeypatch.setattr(train_mod, "train_architecture", recorder)
    build_dataset.main(args(tmp_path, 9, "--export", str(tmp_path / "rows.csv")))
    cheap, full = stored(tmp_path / "rows.sqlite")
    rung0 = {a for a, f in cheap if f == "epochs1-n_reps1"}
    rung1 = {a for a, f in cheap if f == "epochs2-n_reps1"}
    assert len(rung0) == 9 and len(rung1) == 3 and len(full) == 1 and len(recorder.calls) == 13
    # each rung's best third by its own acc_1d goes on; the rung's overrides reached the training
    assert rung1 == set(sorted(rung0, key=lambda a: -fake_accuracy(a, 1))[:3])
    assert set(full) == {max(rung1, key=lambda a: fake_accuracy(a, 2))}
    assert {(e, r) for _, e, r, _ in recorder.calls} == {(1, 1), (2, 1), (3, 2)}
    for (arch_id, name), row in cheap.items():
        assert row["fidelity"] == {"epochs1-n_reps1": {"epochs": 1, "n_reps": 1},
                                   "epochs2-n_reps1": {"epochs": 2, "n_reps": 1}}[name]
        assert row["epochs"] == row["fidelity"]["epochs"]
    assert "fidelity" not in next(iter(full.values())) and next(iter(full.values()))["epochs"] == 3
    err = capsys.readouterr().err
    assert "9 architectures of task digits at fidelity epochs1-n_reps1" in err
    assert "3 architectures of task digits at fidelity epochs2-n_reps1" in err
    assert "1 architectures of task digits at fidelity full" in err and "12 rows of cheaper rungs" in err
    fidelities_csv = (tmp_path / "rows.fidelities.csv").read_text().splitlines()
    assert len(fidelities_csv) == 13 and "fidelity.epochs" in fidelities_csv[0]
    # Again: nothing to train.
    recorder.calls.clear()
    build_dataset.main(args(tmp_path, 9))
    assert recorder.calls == []


def test_a_campaign_stopped_at_any_point_of_any_rung_resumes_to_the_same_rows(tmp_path, monkeypatch):
    """Interrupted before each of its 13 trainings in turn, then run again: the same rows as an
    uninterrupted campaign, and no finished training is done twice."""
    monkeypatch.setattr(train_mod, "train_architecture", Recorder())
    build_dataset.main(args(tmp_path, 9, store="reference.sqlite"))
    reference = stored(tmp_path / "reference.sqlite")
    for stop in range(13):
        store = f"stopped{stop}.sqlite"
        first = Recorder(stop_after=stop)
        monkeypatch.setattr(train_mod, "train_architecture", first)
        with pytest.raises(KeyboardInterrupt):
            build_dataset.main(args(tmp_path, 9, store=store))
        second = Recorder()
        monkeypatch.setattr(train_mod, "train_architecture", second)
        build_dataset.main(args(tmp_path, 9, store=store))
        assert not set(first.calls) & set(second.calls) and len(first.calls) + len(second.calls) == 13, stop
        cheap, full = stored(tmp_path / store)
        assert set(cheap) == set(reference[0]) and set(full) == set(reference[1]), stop


def test_a_surrogate_can_rank_a_rungs_architectures_for_promotion(tmp_path, monkeypatch):
    """promote_by a fit-surrogate directory: its predicted full-budget acc_1d picks the promoted ones
    among those whose rung row finished ok."""
    from lightning_nas.space import Architecture
    from lightning_nas.surrogate import SurrogatePredictor

    monkeypatch.setattr(train_mod, "train_architecture", Recorder())
    build_dataset.main(args(tmp_path, 9, "--fidelity.rungs", "[{epochs: 1, n_reps: 1}]",
                            "--fidelity.promote_by", "surrogates/digits"))
    cheap, full = stored(tmp_path / "rows.sqlite")
    archs = [Architecture.from_dict(r["arch"]) for r in cheap.values()]
    predicted = SurrogatePredictor.load("surrogates/digits").predict(archs, next(iter(cheap.values()))["analog"])
    best = sorted(zip(predicted["acc_1d"], [a.id for a in archs]), reverse=True)[:3]
    assert set(full) == {i for _, i in best}
    by_rung = {a for a, _ in sorted(cheap, key=lambda k: -cheap[k]["metrics"]["acc_1d"])[:3]}
    assert set(full) != by_rung  # not the rung's own ranking


def test_eta_1_trains_every_architecture_at_every_fidelity(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "train_architecture", Recorder())
    build_dataset.main(args(tmp_path, 4, "--fidelity.eta", "1"))
    cheap, full = stored(tmp_path / "rows.sqlite")
    assert len(cheap) == 8 and len(full) == 4


def test_promotion_ranks_unfinished_rows_last_and_is_deterministic():
    class A:
        def __init__(self, id):
            self.id = id

    archs = [A("d"), A("a"), A("c"), A("b")]
    rows = {"a": {"status": "ok", "metrics": {"acc_1d": 50.0}}, "b": {"status": "diverged", "metrics": {"acc_1d": 99.0}},
            "c": {"status": "ok", "metrics": {"acc_1d": 50.0}, "val_acc": 10.0},
            "d": {"status": "ok", "metrics": {"acc_1d": float("nan")}}}
    def best(metric, n):
        scores = Fidelity(rungs=[{"epochs": 1}], promote_by=metric).scores(archs, rows, lambda a: {})
        return [a.id for a in promoted(archs, scores, n)]

    assert best("acc_1d", 2) == ["a", "c"]  # the tie by id; input order kept
    assert best("acc_1d", 3) == ["a", "c", "b"]  # nan ranks with the unfinished (b < d)
    assert best("val_acc", 1) == ["c"]
    assert Fidelity(rungs=[{"epochs": 1}, {"epochs": 2}], eta=3).sizes(10) == [10, 3, 1]
    assert Fidelity(rungs=[{"epochs": 1}], eta=2.5).sizes(5) == [5, 2]
    assert Fidelity(rungs=[{"epochs": 1}], eta=1).sizes(7) == [7, 7]


@pytest.mark.parametrize("extra, message", [
    (["--fidelity.rungs", "[{seed: 3}]"], r"rungs\[0\]: seed can't vary between rungs"),
    (["--fidelity.rungs", "[{epochs: 1}, {epochs: 1}]"], r"rungs\[1\] repeats an earlier rung \(epochs1\)"),
    (["--fidelity.eta", "0.5"], "fidelity.eta must be a number >= 1"),
    (["--fidelity.promote_by", "avm"], "'avm' is neither a metric .* nor a fit-surrogate directory"),
    (["--fidelity.rungs", "[{epochs: 2}]", "--model.init_args.digital_warmup_epochs", "2"],
     r"rungs\[0\] \(epochs2\): the campaign trains 2 epochs with 2 digital warm-up"),
    (["--replicates.n", "1", "--replicates.first", "true"], "replicates.first can't be used with fidelity.rungs"),
])
def test_bad_fidelity_settings_are_refused_before_training(tmp_path, extra, message):
    with pytest.raises(UserError, match=message):
        build_dataset.main(args(tmp_path, 3, *extra))
    assert not (tmp_path / "rows.sqlite").exists()


def test_stores_without_cheaper_rungs_still_load(tmp_path):
    """A store written before fidelities (no fidelity_rows table), read-only: no cheaper rows; its
    rows (no fidelity field) load."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                       "CREATE TABLE rows (arch_id TEXT PRIMARY KEY, status TEXT NOT NULL, row TEXT NOT NULL);")
    conn.execute("INSERT INTO rows VALUES ('x', 'ok', ?)", (json.dumps({"arch_id": "x", "status": "ok"}),))
    conn.commit()
    conn.close()
    with RowStore(path, readonly=True) as store:
        assert store.fidelity_rows() == [] and store.fidelity_ids({"epochs": 1}) == set()
        assert train_mod.Row.from_dict(store.rows()[0]).fidelity is None
    with RowStore(path) as store:  # opened for a campaign: the table is added, the rows kept
        assert store.add_fidelity({"arch_id": "x", "status": "ok", "fidelity": {"epochs": 1}})
        assert not store.add_fidelity({"arch_id": "x", "status": "ok", "fidelity": {"epochs": 1}})
        assert store.fidelity_ids({"epochs": 1}) == {"x"} and len(store) == 1
        with pytest.raises(ValueError, match="no fidelity"):
            store.add_fidelity({"arch_id": "y", "status": "ok"})


@pytest.mark.slow
def test_a_rung_row_is_the_training_its_fidelity_names(tmp_path):
    """Real trainings: a rung's row trains and programs as its overrides say and logs beside the
    full row's run; the promoted architecture's full row is the budget's training."""
    build_dataset.main(["--data.class_path", "lightning_nas.data.DigitsDataModule", "--data.init_args.batch_size", "64",
                        "--sampling.n", "2", "--sampling.max_params", "20000", "--sampling.method", "uniform",
                        "--store", str(tmp_path / "rows.sqlite"), "--campaign_dir", str(tmp_path / "tb"),
                        "--workers", "0", "--budget.epochs", "2", "--budget.limit_train_batches", "2",
                        "--budget.n_reps", "2", "--fidelity.rungs", "[{epochs: 1, n_reps: 1, drift_samples: 50}]",
                        "--fidelity.eta", "2"])
    cheap, full = stored(tmp_path / "rows.sqlite")
    assert len(cheap) == 2 and len(full) == 1
    for (arch_id, name), row in cheap.items():
        assert row["status"] == "ok" and row["epochs"] == 1 and row["drift_samples"] == 50
        assert len(row["curves"]["epoch"]) == 1
        written = json.loads((tmp_path / "tb" / arch_id / "rung-drift_samples50-epochs1-n_reps1" /
                              "drift_metrics.json").read_text())
        assert written["n_reps"] == 1 and written["metrics"]["analog/acc_1d"] == row["metrics"]["acc_1d"]
    (arch_id, row), = full.items()
    assert row["epochs"] == 2 and len(row["curves"]["epoch"]) == 2 and row["drift_samples"] == 270
    assert json.loads((tmp_path / "tb" / arch_id / "drift_metrics.json").read_text())["n_reps"] == 2
    assert row["metrics"]["acc_1d"] != cheap[(arch_id, "drift_samples50-epochs1-n_reps1")]["metrics"]["acc_1d"]


# -- predictors that use cheap information (lightning_nas.surrogate.fidelity) ---------------------

def synthetic(n=400, seed=0, informative=True):
    """Features, a full label and a cheap label that (when ``informative``) is a distorted,
    offset copy of the full one's signal."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 8)).astype("float32")
    signal = np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3]
    full = 80 + 10 * signal + rng.normal(0, 0.3, n)
    cheap = (30 + 15 * signal if informative else 30 + 15 * rng.normal(size=n)) + rng.normal(0, 0.5, n)
    return x, full, cheap


def test_models_with_cheap_labels_rank_better_than_few_full_labels_alone():
    import numpy as np
    from scipy.stats import kendalltau

    from lightning_nas.surrogate.fidelity import FidelityInputModel, StackedModel
    from lightning_nas.surrogate.models import XGBParams, fit_xgb_ranker

    x, full, cheap = synthetic()
    test, few, many = np.arange(300, 400), np.arange(0, 25), np.arange(0, 300)
    params = XGBParams(n_estimators=150)
    alone = kendalltau(fit_xgb_ranker(x[few], full[few], params, 0).predict(x[test]), full[test]).statistic
    fid = np.vstack([np.tile([0.2, 1.0, 0.2], (len(many), 1)), np.ones((len(few), 3))]).astype("float32")
    inp = FidelityInputModel(True, params).fit(np.vstack([x[many], x[few]]), fid,
                                               np.concatenate([cheap[many], full[few]]))
    stacked = StackedModel(True, params).fit(x[many], cheap[many], x[few], full[few])
    for model in (inp, stacked):
        assert kendalltau(model.predict(x[test]), full[test]).statistic > alone + 0.1, type(model).__name__
    # Regression (AVM-like labels): the stacked model predicts on the full label's scale.
    reg = StackedModel(False, params).fit(x[many], cheap[many], x[few], full[few]).predict(x[test])
    assert abs(np.mean(reg) - np.mean(full[test])) < 3 and abs(np.mean(reg) - np.mean(cheap[test])) > 20
    # A cheap label that carries no signal gives the stacked model nothing to use.
    x, full, noise = synthetic(informative=False)
    useless = StackedModel(True, params).fit(x[many], noise[many], x[few], full[few])
    assert kendalltau(useless.predict(x[test]), full[test]).statistic < alone + 0.1


def test_fidelity_vector_and_curve_features():
    import math

    from lightning_nas.surrogate.fidelity import curve_features, fidelity_vector

    full = {"epochs": 15, "n_reps": 10, "train_fraction": 1.0}
    assert fidelity_vector({"epochs": 3, "n_reps": 2}, full) == [0.2, 1.0, 0.2]
    assert fidelity_vector(None, full) == [1.0, 1.0, 1.0]
    row = {"curves": {"val_acc": [40.0, 70.0], "train_loss": [2.0, 1.2]},
           "metrics": {"acc_1s": 60.0, "acc_1d": 58.0, "acc_30d": 55.0, "avm": 5.0, "acc_1d_std": 1.0}}
    assert curve_features(row, 2) == [40.0, 70.0, 30.0, 2.0, 1.2, -0.8, 60.0, 58.0, 55.0, 5.0, 1.0]
    assert curve_features(row, 3)[:4] == [40.0, 70.0, 70.0, 0.0]  # a short curve: its last value repeated
    missing = curve_features({"metrics": row["metrics"]}, 2)  # a row without a curve (the shipped store's)
    assert all(math.isnan(v) for v in missing[:6]) and missing[6:] == [60.0, 58.0, 55.0, 5.0, 1.0]


def test_curve_extrapolation_learns_the_final_accuracy_from_the_first_epochs():
    import numpy as np
    from scipy.stats import kendalltau

    from lightning_nas.surrogate.fidelity import CurveExtrapolator, curve_features

    rng = np.random.default_rng(1)
    n = 300
    x = rng.uniform(size=(n, 4)).astype("float32")
    skill = rng.uniform(size=n)  # what the curve reveals and the features do not
    rows = [{"curves": {"val_acc": [20 + 30 * s, 30 + 50 * s], "train_loss": [2.0 - s, 1.5 - s]},
             "metrics": {"acc_1d": 25 + 45 * s + rng.normal(0, 2)}} for s in skill]
    curves = np.array([curve_features(r, 2) for r in rows], dtype="float32")
    final = 60 + 35 * skill + rng.normal(0, 0.5, n)
    model = CurveExtrapolator().fit(x[:200], curves[:200], final[:200])
    assert kendalltau(model.predict(x[200:], curves[200:]), final[200:]).statistic > 0.8


def test_the_noise_robustness_proxy_is_seeded_and_measures_what_noise_removes():
    import numpy as np

    from lightning_nas.data import DigitsDataModule
    from lightning_nas.space import Architecture
    from lightning_nas.surrogate.fidelity import noise_robustness_proxy

    dm = DigitsDataModule()
    dm.setup()
    data = (dm.train_set.tensors, dm.test_set.tensors)
    archs = [Architecture(), Architecture.from_dict({**Architecture().to_dict(), "out_channel0": 8})]
    a = noise_robustness_proxy(archs, dm.input_shape, dm.num_classes, *data, steps=160)
    assert np.array_equal(a["clean"], noise_robustness_proxy(archs, dm.input_shape, dm.num_classes, *data,
                                                             steps=160)["clean"])
    assert (a["clean"] > 50).all() and (a["clean"] <= 100).all()  # 160 steps learn digits well above chance
    assert np.allclose(noise_robustness_proxy(archs, dm.input_shape, dm.num_classes, *data, steps=160,
                                              noise=0.0)["kept"], 1.0)
    heavy = noise_robustness_proxy(archs, dm.input_shape, dm.num_classes, *data, steps=160, noise=1.0)["kept"]
    assert (heavy < a["kept"]).all() and (heavy < 0.6).all()  # weights drowned in noise lose most of it


def test_the_studys_pipelines_spend_at_most_their_budget_and_imputation_uses_the_cheap_information():
    """benchmarks/fidelity_study.py on the shipped store's first 300 rows, with cheap rows made from them:
    a cheap run whose learning curve ends at the full label (plus noise) is information a pipeline paid
    for, and the curve predictor (the full label imputed from the curve) ranks the held-out architectures
    better than the same few full rows alone."""
    import numpy as np

    from lightning_nas.surrogate.data import load_rows

    study = load_file(ROOT / "benchmarks" / "fidelity_study.py", "fidelity_study")
    rows = load_rows(ROOT / "datasets" / "digits_surrogate.sqlite")[:300]
    rng = np.random.default_rng(0)
    full = {r["arch_id"]: r for r in rows}
    cheap = {}
    for r in rows:
        acc, avm = r["metrics"]["acc_1d"] + rng.normal(0, 0.2), r["metrics"]["avm"] + rng.normal(0, 0.2)
        cheap[r["arch_id"]] = {"arch_id": r["arch_id"], "wall_s": 0.1 * r["wall_s"],
                               "metrics": {"acc_1d": acc - 5, "avm": avm, "acc_1s": acc, "acc_30d": acc - avm},
                               "curves": {"val_acc": [acc - 20, acc - 5], "train_loss": [1.0, 0.5]}}
    d = study.Data(full, cheap, {"epochs": 2, "n_reps": 2}, cost_ratio=0.1)
    assert len(d.ids) == 300 and len(d.test) == 60
    order = np.random.default_rng(1).permutation(d.pool)
    per_arch = rng.uniform(1, 20, len(d.ids))  # a proxy's own cost per architecture
    for cheap_cost, score in ((None, None), (per_arch, -d.y["avm"])):
        spent = cheap_cost if cheap_cost is not None else 0.1 * d.cost_full
        for eta in (2, 4):
            for promote in (True, False):
                budget = 0.2 * d.cost_full[d.pool].sum()
                c, f = study.pipeline(d, order, budget, eta, promote, cheap_cost, score)
                cost = spent[c].sum() + d.cost_full[f].sum()
                assert cost <= budget and set(f) <= set(c) and len(f) == max(1, len(c) // eta)
                if not promote:  # the largest n: one more architecture (and its share of full rows) would not fit
                    more = order[: len(c) + 1]
                    assert spent[more].sum() + d.cost_full[more[: max(1, len(more) // eta)]].sum() > budget
                if promote:  # the best 1/eta by the score
                    s = d.y_cheap["acc_1d"] if score is None else score
                    assert s[f].min() >= np.sort(s[c])[-len(f)]
    c, f = order[:200], order[:12]  # 200 cheap runs, 12 of them also trained in full
    taus = {kind: study.tau(study.fit_predict(kind, True, d, c, f, "acc_1d", 0), d.y["acc_1d"][d.test])
            for kind in ("full", "curve")}
    assert taus["curve"] > taus["full"] + 0.1, taus

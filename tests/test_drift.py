import itertools
import json
import logging
import statistics

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import parameter_state, tensor_state
from lightning_nas.callbacks import METRICS_FILE, DriftEvaluation
from lightning_nas.drift import evaluate_drift
from lightning_nas.errors import UserError
from lightning_nas.metrics import DEFAULT_TIMES, drift_slope, drift_summary, format_table, label_seconds, time_label
from lightning_nas.module import AnalogNASModule
from lightning_nas.space import Architecture, Stage

TINY = Architecture(8, 3, (Stage(1), Stage(1, widenfact=2.0))).to_dict()


def test_time_labels():
    assert [time_label(t) for t in (1, 3600, 86400, 2592000, 60, 0.5)] == ["1s", "1h", "1d", "30d", "1min", "0.5s"]
    assert [time_label(t) for t in (0, 90, 5400)] == ["0s", "90s", "90min"]  # the largest unit that divides


def test_drift_slope_is_pp_per_decade_and_labels_invert():
    assert [label_seconds(time_label(t)) for t in (1, 3600, 86400, 2592000, 60, 0.5)] == [1, 3600, 86400, 2592000, 60, 0.5]
    assert drift_slope({1.0: 90.0, 10.0: 89.0, 100.0: 88.0}) == pytest.approx(-1.0)
    assert drift_slope({1.0: 90.0, 100.0: 86.0}) == pytest.approx(-2.0)  # two times are enough
    assert drift_slope({1.0: 90.0, 3600.0: 90.0, 2592000.0: 90.0}) == 0.0
    # least squares, not the end points: 1 s 90, 10 s 86, 100 s 88 -> slope -1 (ends say -1, middle off the line)
    assert drift_slope({1.0: 90.0, 10.0: 86.0, 100.0: 88.0}) == pytest.approx(-1.0)
    assert drift_slope({1.0: 90.0, 10.0: 90.0, 100.0: 84.0}) == pytest.approx(-3.0)
    assert drift_slope({1.0: 90.0, 10.0: 90.0, 100.0: 90.0, 1000.0: 84.0}) == pytest.approx(-1.8)  # end points: -2
    with pytest.raises(ValueError, match="two drift times"):
        drift_slope({1.0: 90.0})
    with pytest.raises(ValueError, match="not a drift-time label"):
        label_seconds("std")


def test_summary_names_values_and_avm_sign():
    acc = {1.0: [90.0, 92.0], 3600.0: [89.0, 91.0], 86400.0: [85.0, 89.0], 2592000.0: [80.0, 82.0]}
    out = drift_summary(acc)
    assert list(out) == ["analog/acc_1s", "analog/acc_1h", "analog/acc_1d", "analog/acc_30d",
                         "analog/acc_1d_std", "analog/avm"]
    assert out["analog/acc_1d"] == 87.0
    assert out["analog/acc_1d_std"] == pytest.approx(2.8284271, rel=1e-6)  # sample std of 85, 89
    assert out["analog/avm"] == pytest.approx(10.0)  # 91 - 81: positive = accuracy drops
    improving = drift_summary({1.0: [80.0], 86400.0: [85.0], 2592000.0: [90.0]})
    assert improving["analog/avm"] == -10.0 and improving["analog/acc_1d_std"] == 0.0


def test_summary_requires_std_time():
    with pytest.raises(ValueError, match="std_time"):
        drift_summary({1.0: [1.0], 2.0: [2.0]})
    with pytest.raises(ValueError, match="at least one accuracy"):
        drift_summary({86400.0: []})


@pytest.mark.parametrize("kwargs,msg", [
    ({"n_reps": 0}, "n_reps must be >= 1"),
    ({"t_inference": [1, 3600]}, "std_time=86400"),
    ({"t_inference": []}, "non-empty"),
    ({"every_n_val_epochs": 0}, "every_n_val_epochs"),
    ({"bn_recalibration": -1}, "bn_recalibration must be an integer >= 0"),
    ({"bn_recalibration": True}, "bn_recalibration must be an integer >= 0"),
    ({"t_inference": [-1, 86400]}, "times >= 0 s"),
    ({"max_samples": 0}, "max_samples must be an integer >= 1"),
    ({"max_samples": 1.5}, "max_samples must be an integer >= 1"),
])
def test_callback_argument_errors(kwargs, msg):
    with pytest.raises(UserError, match=msg):
        DriftEvaluation(**kwargs)


def test_callback_defaults_and_limits():
    default = DriftEvaluation()
    assert (default.t_inference, default.n_reps, default.std_time, default.seed) == ([1.0, 3600.0, 86400.0, 2592000.0],
                                                                                     5, 86400.0, 0)
    assert DriftEvaluation(t_inference=[0, 86400], max_samples=1).t_inference == [0.0, 86400.0]  # 0 s is a time


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=32)


def test_batchnorm_recalibration_averages_the_programmed_chips_statistics():
    """AdaBS: the running statistics become the plain average over the calibration batches of what
    the network computes now; momentum and eval mode are restored."""
    from lightning_nas.drift import recalibrate_batchnorm

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).eval()
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(1)) * 3 + 2
    batches = [(x[:20], None), (x[20:], None)]
    assert recalibrate_batchnorm(net, batches, torch.device("cpu")) == 2
    with torch.no_grad():
        h = [net[0](b) for b, _ in batches]
    bn = net[1]
    assert torch.allclose(bn.running_mean, (h[0].mean(0) + h[1].mean(0)) / 2, atol=1e-5)
    assert torch.allclose(bn.running_var, (h[0].var(0) + h[1].var(0)) / 2, atol=1e-4)
    assert bn.momentum == 0.1 and not net.training
    with pytest.raises(UserError, match="recalibration batches are empty"):
        recalibrate_batchnorm(net, [], torch.device("cpu"))
    assert recalibrate_batchnorm(torch.nn.Linear(4, 3), batches, torch.device("cpu")) == 0  # no BatchNorm


def test_drift_evaluation_with_batchnorm_recalibration_is_seeded_and_leaves_the_model():
    L.seed_everything(0)
    module = AnalogNASModule(TINY, input_shape=(1, 8, 8), num_classes=2)
    module.net.eval()
    before = {k: v.clone() for k, v in tensor_state(module.net).items()}
    data = _data()
    import lightning_nas.drift as drift_mod

    calls = []
    real = drift_mod.recalibrate_batchnorm

    def spy(model, batches, device):
        used = real(model, batches, device)
        calls.append(used)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and all(int(m.num_batches_tracked) == used for m in norms)  # re-estimated from the batches
        return used

    drift_mod.recalibrate_batchnorm = spy
    try:
        plain = evaluate_drift(module.net, data, [1.0, 86400.0], n_reps=2, seed=3)
        assert calls == []
        calibrated = [evaluate_drift(module.net, data, [1.0, 86400.0], n_reps=2, seed=3, calibration=data)
                      for _ in range(2)]
    finally:
        drift_mod.recalibrate_batchnorm = real
    assert calls == [2] * 8  # 2 programmings x 2 drift times, twice; 2 batches each
    assert calibrated[0] == calibrated[1] and calibrated[0] != plain
    after = module.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_evaluate_drift_leaves_model_unchanged_and_is_seeded():
    torch.manual_seed(0)
    model = AnalogNASModule(TINY, input_shape=(1, 8, 8), num_classes=2).net.train()
    before = {k: v.clone() for k, v in tensor_state(model).items()}
    weights = [t.tile.get_weights().clone() for t in model.analog_tiles()]
    rng_before = torch.random.get_rng_state()
    res = evaluate_drift(model, _data(), [1, 86400], n_reps=3, seed=7)
    assert set(res) == {1.0, 86400.0} and all(len(v) == 3 for v in res.values())
    assert model.training  # mode restored (never changed)
    assert all(torch.equal(w, t.tile.get_weights()) for w, t in zip(weights, model.analog_tiles()))
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert all(t.programmed_weights is None for t in model.analog_tiles())
    assert torch.equal(rng_before, torch.random.get_rng_state())
    # Seeded: the same seed gives the same programmings, another seed other ones.
    assert evaluate_drift(model, _data(), [1, 86400], n_reps=3, seed=7) == res
    assert evaluate_drift(model, _data(), [86400], n_reps=1, seed=8)[86400.0] != res[86400.0][:1]
    # Accuracies in percent of the 64 samples, measured on the programmed copy: the repetitions
    # differ (fresh programming noise each).
    assert all(0 <= a <= 100 and (a * 64 / 100).is_integer() for v in res.values() for a in v)
    assert len(set(res[86400.0])) > 1


def test_each_repetition_programs_fresh_noise(monkeypatch):
    model = AnalogNASModule(TINY, input_shape=(1, 8, 8), num_classes=2).net
    programmed = []
    original = type(next(model.analog_tiles())).program_weights

    def spy(tile, *a, **k):
        original(tile, *a, **k)
        programmed.append(tile.programmed_weights.clone())

    monkeypatch.setattr(type(next(model.analog_tiles())), "program_weights", spy)
    evaluate_drift(model, _data(), [1], n_reps=2, seed=0)
    n_tiles = len(list(model.analog_tiles()))
    assert len(programmed) == 2 * n_tiles
    assert not torch.equal(programmed[0], programmed[n_tiles])  # same tile, next repetition


def test_digital_model_is_rejected():
    with pytest.raises(UserError, match="needs an analog model"):
        evaluate_drift(torch.nn.Linear(2, 2), [], [1], 1)
    model = AnalogNASModule(TINY, input_shape=(1, 8, 8), num_classes=2).net
    with pytest.raises(UserError, match="dataloader is empty"):
        evaluate_drift(model, [], [1], 1)
    with pytest.raises(UserError, match="n_reps must be >= 1"):
        evaluate_drift(model, [], [1], 0)


@pytest.mark.slow
def test_callback_logs_returns_and_writes_json(tmp_path):
    model = AnalogNASModule(TINY, input_shape=(1, 8, 8), num_classes=2)
    cb = DriftEvaluation(n_reps=2, every_n_val_epochs=1)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, callbacks=[cb], default_root_dir=tmp_path,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    w0 = parameter_state(model)
    trainer.fit(model, _data(), _data())
    assert "analog_val/acc_1d" in trainer.callback_metrics  # mid-training evaluation on val
    w1 = parameter_state(model)
    assert any(not torch.equal(w, w1[n]) for n, w in w0.items())  # training went on
    # The values are the drift evaluation of the trained weights, computed here independently
    # (validation ran after the last training step: the weights have not changed since).
    expected_raw = evaluate_drift(model.net, _data(), DEFAULT_TIMES, n_reps=2, seed=0)
    expected_val = drift_summary(expected_raw, prefix="analog_val/")
    assert {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("analog_val/")} \
        == pytest.approx(expected_val)
    result = trainer.test(model, _data(), verbose=False)[0]
    expected = drift_summary(expected_raw)
    assert cb.metrics == pytest.approx(expected) and cb.raw == expected_raw
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    assert result["analog/avm"] == pytest.approx(
        statistics.fmean(expected_raw[1.0]) - statistics.fmean(expected_raw[30 * 86400.0]))
    saved = json.loads((tmp_path / "lightning_logs" / "version_0" / METRICS_FILE).read_text())
    assert saved["metrics"] == pytest.approx(expected)
    assert saved["accuracies"] == {str(t): accs for t, accs in expected_raw.items()}
    assert saved["samples"] == 64 and saved["n_reps"] == 2


def test_drift_evaluation_takes_recalibration_data_from_the_caller_or_refuses():
    """An API caller without a trainer passes the calibration loader to evaluate(); without one the
    error says how to give it. The recalibrated result is what evaluate_drift gives with those batches."""
    L.seed_everything(0)
    module = AnalogNASModule(TINY, input_shape=(1, 8, 8), num_classes=2)
    module.net.eval()
    data = DataLoader(TensorDataset(torch.randn(16, 1, 8, 8), torch.arange(16) % 2), batch_size=4)
    callback = DriftEvaluation(t_inference=[1.0, 86400.0], n_reps=2, seed=3, bn_recalibration=2, save_json=False,
                               verbose=False)
    with pytest.raises(UserError, match="pass calibration= to evaluate"):
        callback.evaluate(module, data)
    summary = callback.evaluate(module, data, calibration=data)
    sample = callback.calibration_batches(None, data)
    assert sample.samples == 8  # bn_recalibration batches of the loader's size, a seeded sample
    expected = evaluate_drift(module.net, data, [1.0, 86400.0], n_reps=2, seed=3, calibration=sample)
    assert callback.raw == expected and summary["analog/acc_1d"] == pytest.approx(sum(expected[86400.0]) / 2)


def test_format_table():
    assert format_table({"analog/acc_1s": 90.0, "analog/acc_1d_std": 0.25, "analog/avm": 1.5}) == (
        "metric      value\n"
        "----------  -------\n"
        "acc_1s        90.00\n"
        "acc_1d_std     0.25\n"
        "avm            1.50")


def test_callback_hooks_log_save_and_print_the_drift_evaluation(tmp_path, caplog):
    """``trainer.validate`` and ``trainer.test`` without training (seconds, unlike the slow test above):
    what the callback logs, keeps, writes to JSON and prints is the drift evaluation of the model's
    weights, computed here independently; an evaluation every 2nd validation epoch skips epoch 1."""
    torch.manual_seed(0)
    model = AnalogNASModule(TINY, input_shape=(1, 8, 8), num_classes=2)
    times = [1.0, 86400.0]
    quiet = dict(default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False)
    every_2nd = DriftEvaluation(t_inference=times, n_reps=1, every_n_val_epochs=2, save_json=False)
    skipping = L.Trainer(callbacks=[every_2nd], logger=False, **quiet)
    skipping.validate(model, _data(), verbose=False)
    assert every_2nd.raw == {} and not any(k.startswith("analog") for k in skipping.callback_metrics)
    warming_up = DriftEvaluation(t_inference=times, n_reps=1, every_n_val_epochs=1, save_json=False)
    digital = AnalogNASModule(TINY, input_shape=(1, 8, 8), num_classes=2, digital_warmup_epochs=1)
    L.Trainer(callbacks=[warming_up], logger=False, **quiet).validate(digital, _data(), verbose=False)
    assert not digital.is_analog and warming_up.raw == {}  # nothing to program during the warm-up

    cb = DriftEvaluation(t_inference=times, n_reps=2, every_n_val_epochs=1, seed=5)
    trainer = L.Trainer(callbacks=[cb], limit_test_batches=1, **quiet)  # test: the first batch only
    val_raw = evaluate_drift(model.net, _data(), times, n_reps=2, seed=5)

    class FirstBatch:  # a DataLoader's first batch (iterating a DataLoader draws from torch's RNG: keep that)
        def __iter__(self):
            return itertools.islice(iter(_data()), 1)

    expected_raw = evaluate_drift(model.net, FirstBatch(), times, n_reps=2, seed=5)
    trainer.validate(model, _data(), verbose=False)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("analog_val/")}
    assert logged == pytest.approx(drift_summary(val_raw, prefix="analog_val/"))
    with caplog.at_level(logging.INFO):
        trainer.test(model, _data(), verbose=False)
    expected = drift_summary(expected_raw)
    assert cb.raw == expected_raw and cb.metrics == pytest.approx(expected)
    assert {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("analog/")} \
        == pytest.approx(expected)
    assert cb.results == pytest.approx({k.split("/")[1]: v for k, v in expected.items()})
    saved = json.loads((tmp_path / "lightning_logs" / "version_0" / METRICS_FILE).read_text())
    assert saved == {"metrics": pytest.approx(expected), "samples": 32, "t_inference": times, "n_reps": 2,
                     "bn_recalibration": 0, "std_time": 86400.0, "seed": 5,
                     "accuracies": {str(t): accs for t, accs in expected_raw.items()}}
    assert "Drift evaluation (2 programmings, 32 test samples, accuracy in %):" in caplog.text
    assert format_table(cb.metrics) in caplog.text


def test_evaluation_batches_are_a_seeded_subset_or_the_first_batches():
    from lightning_nas.callbacks.drift_evaluation import evaluation_batches

    data = _data()  # 64 samples, batches of 32
    rows = {tuple(x.flatten().tolist()): i for i, x in enumerate(data.dataset.tensors[0])}

    def picked(batches):
        return [rows[tuple(x.flatten().tolist())] for xb, _ in batches for x in xb]

    sub = evaluation_batches(data, 40, None, seed=1)
    assert sub.samples == 40 and [len(y) for _, y in sub] == [32, 8]  # batched like the loader
    chosen = picked(sub)
    assert chosen == sorted(chosen) and len(set(chosen)) == 40  # dataset order, no repeats
    assert picked(evaluation_batches(data, 40, None, seed=1)) == chosen  # seeded
    assert picked(evaluation_batches(data, 40, None, seed=2)) != chosen
    shuffled = picked(evaluation_batches(data, 40, None, seed=1, keep_order=False))
    assert sorted(shuffled) == chosen and shuffled != chosen
    whole = evaluation_batches(data, 64, None, seed=1)  # all samples: the loader itself
    assert whole.samples == 64 and picked(whole) == list(range(64))
    first = evaluation_batches(data, None, 1, seed=0)
    assert first.samples == 32 and picked(first) == picked(first) == list(range(32))  # re-iterable
    assert evaluation_batches(data, None, 5, seed=0).samples == 64
    assert evaluation_batches([(torch.zeros(2, 1), torch.zeros(2))], None, None, seed=0).samples == 0


def test_calibration_batches_come_from_the_datamodule_or_the_trainer():
    from types import SimpleNamespace

    data = _data()
    callback = DriftEvaluation(bn_recalibration=1, seed=2)

    def no_train_loader():
        raise AssertionError("the calibration loader comes first")

    sources = [SimpleNamespace(datamodule=SimpleNamespace(calibration_dataloader=lambda: data,
                                                          train_dataloader=no_train_loader)),
               SimpleNamespace(datamodule=SimpleNamespace(train_dataloader=lambda: data)),
               SimpleNamespace(datamodule=None, train_dataloader=data)]
    picked = []
    for trainer in sources:
        batches = callback.calibration_batches(trainer)
        assert batches.samples == 32 and batches.loader.dataset.dataset is data.dataset
        picked.append(batches.loader.dataset.indices)
    assert picked[0] == picked[1] == picked[2] and picked[0] != sorted(picked[0])  # seeded, shuffled
    assert DriftEvaluation().calibration_batches(sources[0]) is None  # off

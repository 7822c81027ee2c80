"""search-loop: search, train the picks, refit, again; resumable (lightning_nas.search.loop)."""

import hashlib
import json

import numpy as np
import pytest
import yaml

from lightning_nas.campaign import train as train_mod
from lightning_nas.campaign.store import RowStore
from lightning_nas.commands import build_dataset, fit_surrogate, search_loop
from lightning_nas.errors import UserError


def fake(arch_id, seed):
    """Made-up metrics of an architecture trained with a seed (the label noise: the seed's share)."""
    h = lambda s: int(hashlib.sha256(f"{arch_id}:{s}".encode()).hexdigest()[:8], 16)  # noqa: E731
    acc = 60 + h("acc") % 380 / 10 + h(seed) % 10 / 10
    avm = h("avm") % 60 / 10 - 1
    return {"acc_1s": acc + avm / 2, "acc_1h": acc + avm / 4, "acc_1d": acc, "acc_30d": acc - avm / 2,
            "acc_1d_std": 0.5 + h("std") % 10 / 10, "avm": avm}


class FakeTraining:
    def __init__(self, stop_after=None):
        self.calls, self.stop_after = [], stop_after

    def __call__(self, job):
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise KeyboardInterrupt
        self.calls.append((job.arch_id, job.seed))
        row = train_mod.base_row(job)
        row["metrics"] = fake(job.arch_id, job.seed)
        return train_mod.Row(**row)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A 40-row campaign of made-up rows, a surrogate fitted on it, and the loop's configs."""
    monkeypatch.setattr(train_mod, "train_architecture", FakeTraining())
    campaign = {"fit_args": ["--data.init_args.batch_size", "64"],
                "sampling": {"n": 40, "method": "uniform", "max_params": 20000, "seed": 0},
                "budget": {"epochs": 1, "limit_train_batches": 1, "n_reps": 1},
                "store": str(tmp_path / "campaign.sqlite"), "campaign_dir": None, "workers": 0}
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(campaign))
    build_dataset.main(["--config", str(tmp_path / "campaign.yaml")])
    surrogate = {"test_fraction": 0.25, "xgb": {"n_estimators": 30}, "mlp": {"epochs": 5}}
    (tmp_path / "surrogate.yaml").write_text(yaml.safe_dump(surrogate))
    fit_surrogate.main(["--config", str(tmp_path / "surrogate.yaml"), "--data", str(tmp_path / "campaign.sqlite"),
                        "--out_dir", str(tmp_path / "surrogate0")])
    search = {"predictor": str(tmp_path / "surrogate0"), "task": "digits",
              "search": {"population": 20, "iterations": 4, "survivors": 15, "max_params": 20000,
                         "objectives": ["acc_1d", "avm"]}}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    loop = {"campaign": str(tmp_path / "campaign.yaml"), "search": str(tmp_path / "search.yaml"),
            "surrogate": str(tmp_path / "surrogate.yaml"), "store": str(tmp_path / "loop.sqlite"), "rounds": 2,
            "candidates": 3, "confirm_seeds": [1], "workers": 0, "out_dir": str(tmp_path / "loop")}
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(loop))
    return tmp_path


def test_the_loop_trains_the_searchs_picks_refits_and_answers_with_the_best_measured(setup, monkeypatch, capsys):
    from lightning_nas.space import Architecture
    from lightning_nas.surrogate import SurrogatePredictor

    training = FakeTraining()
    monkeypatch.setattr(train_mod, "train_architecture", training)
    search_loop.main(["--config", str(setup / "loop.yaml")])
    state = json.loads((setup / "loop" / "loop.json").read_text())
    with RowStore(setup / "campaign.sqlite") as store:
        base = {r["arch_id"] for r in store.rows()}
    assert len(base) == 40  # the campaign's own store is left as it was
    rounds = state["rounds"]
    picked = [c["arch_id"] for r in rounds for c in r["candidates"]]
    assert len(rounds) == 2 and len(picked) == 6 == len(set(picked)) and not set(picked) & base
    assert rounds[0]["predictor"] == str(setup / "surrogate0") and rounds[1]["predictor"] == rounds[0]["surrogate"]
    for rec in rounds:  # the record is what the round's predictor predicted and what training measured
        archs = [Architecture.from_dict(c["arch"]) for c in rec["candidates"]]
        predicted = SurrogatePredictor.load(rec["predictor"]).predict(archs)
        assert np.allclose([c["predicted"]["acc_1d"] for c in rec["candidates"]], predicted["acc_1d"])
        measured = [fake(a.id, 0)["acc_1d"] for a in archs]
        assert [c["measured"]["acc_1d"] for c in rec["report"]["candidates"]] == pytest.approx(measured)
        assert rec["report"]["acc_1d"]["bias"] == pytest.approx(np.mean(measured) - np.mean(predicted["acc_1d"]))
    with RowStore(setup / "loop.sqlite") as store:
        rows = {r["arch_id"]: r for r in store.rows()}
        replicates = store.replicate_rows()
    assert len(rows) == 46 and set(picked) <= set(rows)  # the copy of the campaign, plus the candidates
    best = max(picked, key=lambda a: fake(a, 0)["acc_1d"])
    answer = state["answer"]
    assert answer["arch_id"] == best and [r["arch_id"] for r in replicates] == [best]
    assert answer["confirmed"]["seeds"] == [0, 1]
    assert answer["confirmed"]["acc_1d"] == pytest.approx([fake(best, 0)["acc_1d"], fake(best, 1)["acc_1d"]])
    assert sorted(training.calls) == sorted([(a, 0) for a in picked] + [(best, 1)])
    assert "Answer: " in (setup / "loop" / "loop.md").read_text() and "| 2 | 3 (3 ok)" in capsys.readouterr().out
    # Again: everything is done; nothing is trained.
    training.calls.clear()
    search_loop.main(["--config", str(setup / "loop.yaml")])
    assert training.calls == []
    # Other settings on the same out_dir are refused, naming them.
    with pytest.raises(UserError, match=r"loop with other settings \(candidates\)"):
        search_loop.main(["--config", str(setup / "loop.yaml"), "--candidates", "4"])


@pytest.mark.parametrize("stop", [1, 4, 6])
def test_a_loop_stopped_in_any_phase_continues_and_trains_nothing_twice(setup, monkeypatch, stop):
    """Stopped while training round 1's candidates (1), round 2's (4) or the confirmation (6), then
    run again: the same rounds and answer as an uninterrupted loop, each training done once."""
    first = FakeTraining(stop_after=stop)
    monkeypatch.setattr(train_mod, "train_architecture", first)
    with pytest.raises(KeyboardInterrupt):
        search_loop.main(["--config", str(setup / "loop.yaml")])
    second = FakeTraining()
    monkeypatch.setattr(train_mod, "train_architecture", second)
    search_loop.main(["--config", str(setup / "loop.yaml")])
    assert len(first.calls) == stop and len(first.calls) + len(second.calls) == 7
    assert not set(first.calls) & set(second.calls)
    state = json.loads((setup / "loop" / "loop.json").read_text())
    picked = [c["arch_id"] for r in state["rounds"] for c in r["candidates"]]
    assert len(set(picked)) == 6 and state["answer"]["arch_id"] == max(picked, key=lambda a: fake(a, 0)["acc_1d"])


def test_bad_loop_settings_are_one_line(setup, monkeypatch):
    monkeypatch.setattr(train_mod, "train_architecture", FakeTraining())
    with pytest.raises(UserError, match="confirm_seeds must be distinct seeds other than the campaign's"):
        search_loop.main(["--config", str(setup / "loop.yaml"), "--confirm_seeds", "[0]"])
    with pytest.raises(UserError, match="rounds and candidates must be >= 1"):
        search_loop.main(["--config", str(setup / "loop.yaml"), "--rounds", "0"])
    other = yaml.safe_load((setup / "campaign.yaml").read_text()) | {"store": str(setup / "missing.sqlite")}
    (setup / "other.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(UserError, match="no campaign store at .* to start the loop's store from"):
        search_loop.main(["--config", str(setup / "loop.yaml"), "--store", str(setup / "new.sqlite"),
                          "--campaign", str(setup / "other.yaml")])

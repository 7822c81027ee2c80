"""build-dataset on a local Ray instance (2 CPUs): same rows as the local executor, retries."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from lightning_nas.campaign.store import RowStore
from lightning_nas.commands import build_dataset

ray = pytest.importorskip("ray", reason="the Ray tests need the dev extra (pip install -e '.[dev]')")


def args(store, n=3, limit=2, *extra):
    return ["--data.class_path", "lightning_nas.data.DigitsDataModule", "--sampling.n", str(n),
            "--sampling.max_params", "20000", "--sampling.method", "uniform", "--store", str(store),
            "--campaign_dir", "null", "--budget.epochs", "1", "--budget.limit_train_batches", str(limit),
            "--budget.n_reps", "2", "--threads_per_worker", "1", *extra]


RAY = ["--executor", "ray", "--ray.local_cpus", "2", "--ray.num_cpus", "1"]


@pytest.fixture(scope="module", autouse=True)
def ray_home(tmp_path_factory):
    """Ray's home for these tests: a local instance turns token authentication on and writes its
    token to ~/.ray/auth_token; that goes to a temporary home, not the user's (and a token left
    there would switch later clusters of the user to token authentication)."""
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("home"))
    try:
        yield
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if saved is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = saved
COMPARED = ("arch_id", "status", "n_params", "metrics", "val_acc", "acc_eval", "features", "analog", "seed")


def rows(store):
    with RowStore(store) as s:
        return {r["arch_id"]: r for r in s.rows()}


@pytest.mark.slow
def test_ray_campaign_gives_the_same_rows_as_the_local_executor(tmp_path):
    build_dataset.main(args(tmp_path / "local.sqlite", 3, 2, "--workers", "1"))
    build_dataset.main(args(tmp_path / "ray.sqlite", 3, 2, *RAY))
    local, remote = rows(tmp_path / "local.sqlite"), rows(tmp_path / "ray.sqlite")
    assert local.keys() == remote.keys() and len(local) == 3
    for key in local:
        assert {k: local[key][k] for k in COMPARED} == {k: remote[key][k] for k in COMPARED}
    # Resume through Ray: only the new architectures are trained.
    build_dataset.main(args(tmp_path / "ray.sqlite", 4, 2, *RAY))
    assert len(rows(tmp_path / "ray.sqlite")) == 4
    # Rungs (successive halving) run through Ray as locally: the same rung rows and promotion.
    rungs = ["--budget.epochs", "2", "--fidelity.rungs", "[{epochs: 1, n_reps: 1}]", "--fidelity.eta", "3"]
    build_dataset.main(args(tmp_path / "local_rungs.sqlite", 3, 2, "--workers", "1", *rungs))
    build_dataset.main(args(tmp_path / "ray_rungs.sqlite", 3, 2, *RAY, *rungs))
    stored = []
    for name in ("local_rungs.sqlite", "ray_rungs.sqlite"):
        with RowStore(tmp_path / name) as s:
            stored.append(({r["arch_id"]: {k: r[k] for k in (*COMPARED, "fidelity")} for r in s.fidelity_rows()},
                           {r["arch_id"]: {k: r[k] for k in COMPARED} for r in s.rows()}))
    assert stored[0] == stored[1] and len(stored[0][0]) == 3 and len(stored[0][1]) == 1


def ray_worker_pids():
    out = subprocess.run(["pgrep", "-f", "ray::train_architecture"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_nothing_is_lost_or_duplicated(tmp_path):
    store = tmp_path / "rows.sqlite"
    errors = []

    def campaign():
        try:
            build_dataset.main(args(store, 3, 20, *RAY))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=campaign)
    thread.start()
    killed = []
    deadline = time.time() + 120
    while not killed and time.time() < deadline and thread.is_alive():
        pids = ray_worker_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)  # a worker dies mid-task
            killed.append(pids[0])
        time.sleep(0.05)
    thread.join(timeout=600)
    assert not errors and killed, (errors, killed)
    result = rows(store)
    assert len(result) == 3 and all(r["status"] == "ok" for r in result.values())


@pytest.mark.slow
def test_retrain_runs_winners_as_ray_tasks(tmp_path):
    import csv

    from conftest import ROOT
    from lightning_nas.commands import retrain

    winners = tmp_path / "winners"
    winners.mkdir()
    (winners / "winner_1.yaml").write_text("architecture: {out_channel0: 8, kernel0: 3, stages: [{R: 1}]}\n")
    (winners / "winner_2.yaml").write_text("architecture: {out_channel0: 12, kernel0: 5, stages: [{R: 2}]}\n")
    retrain.main(["--fit_config", str(ROOT / "configs" / "digits" / "fit.yaml"), "--winners", str(winners), "--top_k", "2",
                  "--baseline", "null", "--out_dir", str(tmp_path / "r"), "--executor", "ray",
                  "--ray.local_cpus", "2", "--fit_args", '["--trainer.max_epochs", "1", '
                  '"--trainer.limit_train_batches", "2", "--drift.n_reps", "2", "--trainer.enable_progress_bar", '
                  '"false"]'])
    table = list(csv.DictReader((tmp_path / "r" / "comparison.csv").open()))
    assert [r["name"] for r in table] == ["winner_1", "winner_2"]  # in the order of the runs
    assert (tmp_path / "r" / "runs" / "winner_2").is_dir()  # each run logged where the driver asked
    # A Ray task trains what a local retrain trains: the same config, the same thread count (ray.num_cpus 1).
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        retrain.main(["--fit_config", str(ROOT / "configs" / "digits" / "fit.yaml"), "--winners", str(winners / "winner_1.yaml"),
                      "--baseline", "null", "--out_dir", str(tmp_path / "local"), "--fit_args", '["--trainer.max_epochs", "1", '
                      '"--trainer.limit_train_batches", "2", "--drift.n_reps", "2", "--trainer.enable_progress_bar", "false"]'])
    finally:
        torch.set_num_threads(threads)
    local = list(csv.DictReader((tmp_path / "local" / "comparison.csv").open()))
    assert local == table[:1] and table[0]["n_params"] != table[1]["n_params"]
    for row in table:  # each row is its run's drift evaluation, with the fit_args the driver gave
        [found] = (tmp_path / "r" / "runs" / row["name"]).glob("*/drift_metrics.json")
        written = json.loads(found.read_text())
        assert written["n_reps"] == 2 and float(row["acc_1d"]) == pytest.approx(written["metrics"]["analog/acc_1d"], abs=0.006)

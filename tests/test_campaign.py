import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from dataclasses import replace

from lightning_nas.campaign import train as train_mod
from lightning_nas.campaign.local_executor import LocalExecutor
from lightning_nas.campaign.store import RowStore, export
from lightning_nas.commands import build_dataset
from lightning_nas.errors import UserError
from lightning_nas.fit_config import with_options

TINY_BUDGET = ["--budget.epochs", "1", "--budget.limit_train_batches", "2", "--budget.n_reps", "2"]


def campaign_args(tmp_path, n=4, workers="0", *extra):
    return ["--data.class_path", "lightning_nas.data.DigitsDataModule", "--data.init_args.batch_size", "64",
            "--sampling.n", str(n), "--sampling.max_params", "20000", "--sampling.method", "uniform",
            "--store", str(tmp_path / "rows.sqlite"), "--campaign_dir", str(tmp_path / "tb"),
            "--workers", workers, *TINY_BUDGET, *extra]


def without_workers(args):
    """``args`` without their ``--workers N`` (the worker count left to build-dataset)."""
    at = args.index("--workers")
    return args[:at] + args[at + 2:]


@pytest.mark.slow
def test_four_architecture_campaign_end_to_end(tmp_path):
    build_dataset.main(campaign_args(tmp_path, 4, "0", "--export", str(tmp_path / "rows.csv")))
    with RowStore(tmp_path / "rows.sqlite") as store:
        rows = store.rows()
    assert len(rows) == 4 and len({r["arch_id"] for r in rows}) == 4
    for row in rows:
        assert row["status"] == "ok", row["message"]
        assert set(row["metrics"]) == {"acc_1s", "acc_1h", "acc_1d", "acc_30d", "acc_1d_std", "avm"}
        assert len(row["features"]) == 28 and row["analog"]["inp_bits"] == 8
        assert row["n_params"] <= 20000 and row["wall_s"] > 0 and row["epochs"] == 1
        # The row holds what its training measured: the drift evaluation's own file in the row's
        # TensorBoard folder (one per architecture), per-programming accuracies included, and the
        # validation accuracy of the epoch's curve.
        folder = tmp_path / "tb" / row["arch_id"]
        written = json.loads((folder / "drift_metrics.json").read_text())
        assert {k.removeprefix("analog/"): v for k, v in written["metrics"].items()} == row["metrics"]
        assert written["n_reps"] == 2 and written["samples"] == row["drift_samples"] == 270
        per_rep = written["accuracies"]
        assert row["metrics"]["acc_1d"] == pytest.approx(sum(per_rep["86400.0"]) / 2)
        assert row["metrics"]["avm"] == pytest.approx(sum(per_rep["1.0"]) / 2 - sum(per_rep["2592000.0"]) / 2)
        assert row["val_acc"] == pytest.approx(row["curves"]["val_acc"][-1]) and (folder / "config.yaml").is_file()
    assert any(r["metrics"]["acc_1d_std"] > 0 for r in rows)  # programmings differ
    assert any(r["metrics"]["acc_1s"] != r["metrics"]["acc_30d"] for r in rows)  # the weights drifted
    header = (tmp_path / "rows.csv").read_text().splitlines()[0].split(",")
    assert {"arch_id", "metrics.acc_1d", "metrics.avm", "analog.g_max", "n_params", "status"} <= set(header)
    # Same command again: nothing to do, nothing duplicated.
    build_dataset.main(campaign_args(tmp_path, 4, "0"))
    with RowStore(tmp_path / "rows.sqlite") as store:
        assert len(store) == 4


@pytest.mark.slow
def test_failing_architecture_is_recorded_and_the_campaign_goes_on(tmp_path, monkeypatch, capsys):
    """An exception inside one architecture's training (here: out of memory in its second fit) is
    caught by train_architecture itself: a failed row with the message, and the campaign goes on."""
    import lightning_nas.training as training

    real, calls = training.fit_and_evaluate, []

    def oom_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "fit_and_evaluate", oom_once)  # what train_architecture calls
    build_dataset.main(campaign_args(tmp_path, 3, "0"))
    err = capsys.readouterr().err.splitlines()
    done = next(line for line in err if line.startswith("done: "))
    assert err[-1] == f"exported {tmp_path / 'rows.csv'}"  # the export beside the store, said last
    assert "(2 ok, 0 diverged" in done and "1 failed: trained again" in done, done
    with RowStore(tmp_path / "rows.sqlite") as store:
        rows = store.rows()
    assert [r["status"] for r in rows].count("failed") == 1 and len(rows) == 3
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["message"] == "out of memory: RuntimeError: CUDA out of memory (simulated)"
    assert "oom_once" in failed["traceback"] and "metrics" not in failed and failed["n_params"] > 0


def tiny_job(*fit_args, **budget):
    """The job of one small architecture in a campaign with fit's defaults and ``fit_args``."""
    from lightning_nas.campaign.campaign import Campaign, Sampling
    from lightning_nas.space import Architecture

    budget = {"epochs": 1, "limit_train_batches": 1, "n_reps": 1, **budget}
    campaign = Campaign.from_fit_config(None, list(fit_args), train_mod.Budget(**budget), Sampling())
    return campaign.jobs([Architecture()], "digits", None, "cpu")[0]


def test_training_errors_become_statuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    row = train_mod.train_architecture(tiny_job("--data.init_args.batch_size", str(10**9)))
    assert row.status == "ok"  # a huge batch is fine
    assert set(row.metrics) >= {"acc_1d", "avm"}
    assert not list(tmp_path.iterdir())  # no log dir: nothing written to the working directory (no config.yaml)
    row = train_mod.train_architecture(tiny_job("--model.init_args.lr", "1e38", "--model.init_args.analog.clip_value",
                                                "0.0", "--data.init_args.batch_size", "32", limit_train_batches=5))
    assert row.status == "diverged" and "diverged" in row.message  # no clipping: the weights overflow
    job = tiny_job()
    job.config["data"]["init_args"]["val_fraction"] = 0.99  # an error inside training (the split), not the campaign's
    row = train_mod.train_architecture(job)
    assert row.status == "failed" and "val_fraction" in row.message and row.traceback


def test_rows_count_their_optimizer_steps_and_a_starved_budget_is_warned_once(tmp_path, monkeypatch, capsys):
    """A row records the optimizer steps of its training, digital warm-up included (2 epochs of 3
    batches: 6); a campaign whose rows train fewer than the recipe needs warns once, with the numbers."""
    from lightning_nas.training import MIN_OPTIMIZER_STEPS

    monkeypatch.chdir(tmp_path)
    row = train_mod.train_architecture(tiny_job("--model.init_args.digital_warmup_epochs", "1", epochs=2,
                                                limit_train_batches=3))
    assert row.status == "ok" and row.steps == 6
    assert [c for c in row.curves["hardware_aware"]] == [False, True]  # one warm-up epoch, one hardware-aware
    steps = {"n": 40}
    monkeypatch.setattr(train_mod, "train_architecture",
                        lambda job: train_mod.base_row(job) | {"metrics": {"acc_1d": 1.0}, "steps": steps["n"]})
    args = ["--budget.epochs", "2", "--budget.n_reps", "1", "--budget.threads", "1", "--sampling.n", "3",
            "--sampling.max_params", "20000", "--campaign_dir", "null", "--workers", "0"]
    build_dataset.main([*args, "--store", str(tmp_path / "a.sqlite")])
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "40 optimizer steps (2 epochs of 20 batches)" in warned[0]
    assert f"fewer than the {MIN_OPTIMIZER_STEPS}" in warned[0] and "batch_size" in warned[0]
    steps["n"] = MIN_OPTIMIZER_STEPS
    build_dataset.main([*args, "--store", str(tmp_path / "b.sqlite")])
    assert "warning:" not in capsys.readouterr().err


def test_store_refuses_a_different_campaign_and_keeps_rows_once(tmp_path):
    with RowStore(tmp_path / "s.sqlite") as store:
        store.bind({"task": "a", "budget": {"epochs": 1}})
        assert store.add({"arch_id": "x", "status": "ok"})
        assert not store.add({"arch_id": "x", "status": "failed"})
        with pytest.raises(UserError, match="different budget"):
            store.bind({"task": "a", "budget": {"epochs": 2}})
    with pytest.raises(UserError, match="unknown export format"):
        export([], tmp_path / "rows.txt")


def count_rows(path):
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_kill_9_and_resume_keeps_every_finished_row_exactly_once(tmp_path):
    cmd = [sys.executable, "-m", "lightning_nas", "build-dataset", *campaign_args(tmp_path, 5, "1")]
    store = tmp_path / "rows.sqlite"
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while count_rows(store) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker, no clean-up
    proc.wait()
    with RowStore(store) as s:
        before = {r["arch_id"]: r for r in s.rows()}
    assert 2 <= len(before) < 5, "the campaign should have been killed mid-way"
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(before)} already in" in done.stderr
    assert "logging interval" not in done.stderr  # Lightning's warning is not repeated for every architecture
    with RowStore(store) as s:
        after = s.rows()
    assert len(after) == 5 and len({r["arch_id"] for r in after}) == 5
    for row in after:  # rows finished before the kill are untouched
        if row["arch_id"] in before:
            assert json.dumps(row, sort_keys=True) == json.dumps(before[row["arch_id"]], sort_keys=True)


@pytest.mark.slow
def test_bad_campaign_config_is_one_line(run_cli, tmp_path):
    proc = run_cli("build-dataset", *campaign_args(tmp_path, 2, "0"), "--model.init_args.analog.preset", "nope")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: unknown analog preset")
    proc = run_cli("build-dataset", *campaign_args(tmp_path, 2, "0"), "--sampling.max_params", "10")
    assert proc.returncode == 2 and "raise max_params" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_crashing_architecture_fails_alone_and_its_neighbours_train(tmp_path):
    from stub_predictor import crash_for_small_stem
    from lightning_nas.space import Architecture, Stage

    archs = [Architecture(c, 3, (Stage(),)) for c in (16, 8, 24, 32, 12)]
    job = tiny_job()
    jobs = [replace(job, config=with_options(job.config, {"model.init_args.architecture": a.to_dict()})) for a in archs]
    rows = []
    LocalExecutor(2, train=crash_for_small_stem).run(jobs, rows.append)
    status = {r.arch_id: r.status for r in map(train_mod.Row.from_dict, rows)}
    assert len(rows) == 5 and set(status) == {a.id for a in archs}
    assert status.pop(archs[1].id) == "failed"
    assert set(status.values()) == {"ok"}  # the jobs beside the crash were not blamed


def test_workers_per_gpu_gives_each_device_the_same_number_of_workers(monkeypatch):
    """gpus x workers_per_gpu workers, pinned round robin in start order (0, 1, 0, 1): each device gets
    exactly workers_per_gpu of them, and the first workers of a pool are spread over the devices. A
    campaign started on a slice of the machine's GPUs (CUDA_VISIBLE_DEVICES) shares out that slice."""
    from collections import Counter
    from multiprocessing import get_context

    from lightning_nas.campaign.campaign import local_workers
    from lightning_nas.campaign.local_executor import _claim_gpu, gpu_of_worker

    def claimed(gpus, workers, visible=None):
        counter = get_context("spawn").Value("i", 0)  # the pool's start-order counter
        devices = []
        for _ in range(workers):  # each worker's initializer, in the environment it inherits
            if visible is None:
                monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
            else:
                monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
            _claim_gpu(counter, gpus)
            devices.append(os.environ["CUDA_VISIBLE_DEVICES"])
        return devices

    workers = local_workers(None, 2, 2)
    assert workers == 4 and claimed(2, workers) == ["0", "1", "0", "1"]
    assert Counter(claimed(2, local_workers(None, 4, 2))) == {"0": 4, "1": 4}
    assert claimed(3, local_workers(None, 1, 3)) == ["0", "1", "2"]  # the default: one worker per GPU, as before
    assert claimed(2, 4, visible="2,3") == ["2", "3", "2", "3"]  # the campaign's slice, not GPUs 0 and 1
    assert claimed(1, 2, visible="GPU-aaaa") == ["GPU-aaaa", "GPU-aaaa"]
    assert gpu_of_worker(1, 2, "") == "1" and gpu_of_worker(2, 2, "5") == "0"  # no usable list: CUDA's own numbers
    assert local_workers(None, 1, 0) == 1 and local_workers(3, 1, 2) == 3 and local_workers(0, 1, 2) == 0


def report_device(barrier, job):
    """A stand-in training: waits until every worker of the pool holds a job, says where it runs."""
    barrier.wait(timeout=120)
    return os.getpid(), os.environ["CUDA_VISIBLE_DEVICES"]


def test_a_pool_with_two_workers_per_gpu_pins_two_processes_to_each_device(monkeypatch):
    """The real pool: four spawned workers on two (pretended) GPUs, each holding a job at once (a
    barrier), report two processes on each device."""
    import functools
    from collections import Counter
    from multiprocessing import get_context

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # the workers' inherited environment
    with get_context("spawn").Manager() as manager:
        rows = []
        LocalExecutor(4, gpus=2, train=functools.partial(report_device, manager.Barrier(4))).run(list(range(4)),
                                                                                                  rows.append)
    assert len({pid for pid, _ in rows}) == 4  # four processes
    assert Counter(device for _, device in rows) == {"0": 2, "1": 2}


class RecordingExecutor:
    """An executor that trains nothing and records how build-dataset set it up."""
    made: list = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.jobs = args, kwargs, []
        RecordingExecutor.made.append(self)

    def run(self, jobs, on_row):
        self.jobs += jobs


def test_build_dataset_runs_workers_per_gpu_workers_on_each_gpu_and_shares_the_cores(tmp_path, monkeypatch, capsys):
    import torch

    from lightning_nas.campaign import local_executor

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(local_executor, "LocalExecutor", RecordingExecutor)
    monkeypatch.setattr(RecordingExecutor, "made", [])
    build_dataset.main([*without_workers(campaign_args(tmp_path, 2)), "--accelerator", "gpu", "--workers_per_gpu", "2", "--export", "false"])
    [executor] = RecordingExecutor.made
    assert executor.args == (4, 2)  # 2 GPUs x 2 workers
    assert "to train with 4 worker process(es) on 2 GPU(s), 2 per GPU" in capsys.readouterr().err
    assert {job.worker_threads for job in executor.jobs} == {max(1, (os.cpu_count() or 1) // 4)}
    assert {job.config["trainer"]["accelerator"] for job in executor.jobs} == {"gpu"}


def test_workers_per_gpu_maps_to_a_fractional_gpu_per_ray_task(tmp_path, monkeypatch, capsys):
    from lightning_nas.campaign import ray_executor
    from lightning_nas.campaign.ray_executor import RayOptions, packed

    assert packed(RayOptions(), 4).num_gpus == 0.25 and packed(RayOptions(num_gpus=0.5), 1).num_gpus == 0.5
    assert packed(RayOptions(num_cpus=2), 1) == RayOptions(num_cpus=2)
    with pytest.raises(UserError, match=r"workers_per_gpu \(2\) and ray.num_gpus \(0.5\) both set"):
        packed(RayOptions(num_gpus=0.5), 2)
    monkeypatch.setattr(ray_executor, "RayExecutor", RecordingExecutor)
    monkeypatch.setattr(RecordingExecutor, "made", [])
    build_dataset.main(campaign_args(tmp_path, 2, "0", "--executor", "ray", "--workers_per_gpu", "4",
                                     "--export", "false"))  # no Ray started: the executor is a stand-in
    [executor] = RecordingExecutor.made
    assert executor.args[0] == RayOptions(num_gpus=0.25)
    assert "Ray tasks (1 CPU, 0.25 GPU each)" in capsys.readouterr().err
    ray = pytest.importorskip("ray")
    ray.remote(num_gpus=packed(RayOptions(), 3).num_gpus)(report_device)  # a share Ray accepts (0.0001 precision)


@pytest.mark.parametrize("args,fragments", [
    (["--workers_per_gpu", "0"], ["workers_per_gpu must be an integer >= 1, got 0"]),
    (["--workers_per_gpu", "2", "--accelerator", "cpu"], ["workers_per_gpu (2) needs GPUs", "set workers instead"]),
    (["--workers_per_gpu", "2", "--workers", "3"], ["workers (3) and workers_per_gpu (2) both set", "give one"]),
    (["--workers_per_gpu", "2", "--workers", "0"], ["workers (0) and workers_per_gpu (2) both set"]),
    (["--workers_per_gpu", "2", "--executor", "ray", "--ray.num_gpus", "0.5"],
     ["workers_per_gpu (2) and ray.num_gpus (0.5) both set", "workers_per_gpu 2 is ray.num_gpus 0.5"]),
    (["--workers_per_gpu", "2", "--executor", "ray", "--accelerator", "cpu"], ["needs GPUs, and accelerator is cpu"]),
    (["--workers_per_gpu", "-1", "--executor", "ray"], ["workers_per_gpu must be an integer >= 1, got -1"]),
])
def test_contradictory_worker_settings_are_one_error_line(cli, tmp_path, args, fragments):
    from test_cli import assert_one_line_error

    assert_one_line_error(cli("build-dataset", *without_workers(campaign_args(tmp_path, 2)), *args), *fragments)
    assert not (tmp_path / "rows.sqlite").exists()  # refused before the store is made


def test_failed_rows_are_retried_on_the_next_run(tmp_path):
    with RowStore(tmp_path / "s.sqlite") as store:
        assert store.add({"arch_id": "a", "status": "failed"})
        assert store.ids(statuses=("ok", "diverged")) == set()
        assert store.add({"arch_id": "a", "status": "ok", "wall_s": 1.0})  # the retry replaces it
        assert not store.add({"arch_id": "a", "status": "failed"})  # an ok row stays
        assert store.rows()[0]["wall_s"] == 1.0 and len(store) == 1
        with pytest.raises(ValueError, match="unknown fields x"):  # typed rows: no stray fields
            store.add({"arch_id": "b", "status": "ok", "x": 1})
        with pytest.raises(ValueError, match="status is one of ok, diverged, failed"):
            store.add({"arch_id": "b", "status": "done"})


def test_a_bad_budget_is_refused_before_training(tmp_path):
    with pytest.raises(UserError, match="std_time"):
        build_dataset.main(campaign_args(tmp_path, 2, "0", "--drift.t_inference", "[1, 3600]"))
    with pytest.raises(UserError, match="1 digital warm-up epochs"):  # would never train analog
        build_dataset.main(campaign_args(tmp_path, 2, "0", "--model.init_args.digital_warmup_epochs", "1"))
    with pytest.raises(UserError, match="budget.epochs must be >= 1"):
        build_dataset.main(campaign_args(tmp_path, 2, "0", "--budget.epochs", "0"))
    with pytest.raises(UserError, match="trainer.max_epochss is not an option.*did you mean trainer.max_epochs"):
        from lightning_nas.fit_config import resolve, with_options

        with_options(resolve(None), {"trainer.max_epochss": 3})
    assert not (tmp_path / "rows.sqlite").exists() or len(RowStore(tmp_path / "rows.sqlite")) == 0


HARDWARE = '{out_noise: {min: 0.0, max: 0.08}, out_bits: [6, 8]}'


@pytest.mark.slow
def test_a_campaign_can_sample_the_hardware_per_architecture(tmp_path):
    from lightning_nas.campaign.campaign import Sampling
    from lightning_nas.space import Architecture

    build_dataset.main(campaign_args(tmp_path, 4, "0", "--sampling.hardware", HARDWARE))
    with RowStore(tmp_path / "rows.sqlite") as store:
        rows = store.rows()
    with sqlite3.connect(tmp_path / "rows.sqlite") as conn:
        identity = json.loads(conn.execute("SELECT value FROM meta WHERE key='identity'").fetchone()[0])
    sampling = Sampling(n=4, seed=0, hardware={"out_noise": {"min": 0.0, "max": 0.08}, "out_bits": [6, 8]})
    drawn = []
    for row in rows:
        assert row["status"] == "ok", row["message"]
        expected = sampling.hardware_for(Architecture.from_dict(row["arch"]))
        assert row["analog"]["out_noise"] == pytest.approx(expected["out_noise"])
        assert row["analog"]["out_bits"] == expected["out_bits"] and row["analog"]["inp_bits"] == 8
        drawn.append(row["analog"]["out_noise"])
    assert len(set(drawn)) == 4 and all(0.0 <= v <= 0.08 for v in drawn)
    assert identity["hardware_sampling"]["ranges"]["out_bits"] == [6, 8]
    # Other ranges are another campaign: the store refuses them, naming the difference.
    with pytest.raises(UserError, match="hardware_sampling"):
        build_dataset.main(campaign_args(tmp_path, 4, "0", "--sampling.hardware", "{out_bits: [4, 8]}"))


@pytest.mark.parametrize("ranges, message", [
    ("{adc: [8]}", "'adc' is not a hardware feature"),
    ("{out_noise: {min: 0.1, max: 0.0}}", "a range is"),
    ("{out_bits: {min: 4, max: 8}}", "takes integers"),
    ("{out_bits: []}", "non-empty list"),
    ("{out_bits: [1, 8]}", "out_bits must be 0 .off. or 2..16"),
])
def test_bad_hardware_ranges_are_refused_before_training(tmp_path, ranges, message):
    with pytest.raises(UserError, match=message):
        build_dataset.main(campaign_args(tmp_path, 2, "0", "--sampling.hardware", ranges))
    assert not (tmp_path / "rows.sqlite").exists()


@pytest.mark.slow
def test_replicates_train_a_seeded_subset_again_and_feed_the_ceiling(tmp_path, capsys):
    from lightning_nas.commands import fit_surrogate

    args = campaign_args(tmp_path, 10, "0", "--replicates.n", "3", "--replicates.seeds", "[1, 2]",
                         "--replicates.n_reps", "3")
    build_dataset.main(args)
    with RowStore(tmp_path / "rows.sqlite") as store:
        rows, replicates = store.rows(), store.replicate_rows()
    assert len(rows) == 10 and len(replicates) == 6
    assert {r["seed"] for r in replicates} == {1, 2} and {r["seed"] for r in rows} == {0}
    assert len({r["arch_id"] for r in replicates}) == 3 <= len({r["arch_id"] for r in rows} & {r["arch_id"] for r in replicates})
    build_dataset.main(args)  # resumed: nothing trained twice
    with RowStore(tmp_path / "rows.sqlite") as store:
        assert len(store.replicate_rows()) == 6 and len(store) == 10
    fit_surrogate.main(["--data", str(tmp_path / "rows.sqlite"), "--out_dir", str(tmp_path / "sur"),
                        "--mlp.epochs", "2", "--test_fraction", "0.5", "--learned_threshold", "0"])
    report = json.loads((tmp_path / "sur" / "report.json").read_text())
    assert report["ceiling"]["architectures"] == 3 and set(report["ceiling"]) >= {"acc_1d", "avm", "std"}
    assert "label-noise ceiling (3 architectures" in capsys.readouterr().out
    with pytest.raises(UserError, match="replicates.seeds must be distinct training seeds other than budget.seed"):
        build_dataset.main(campaign_args(tmp_path, 10, "0", "--replicates.n", "2", "--replicates.seeds", "[0]"))


def test_replicates_first_trains_the_replicated_architectures_before_the_rest(tmp_path, monkeypatch):
    """replicates.first: the replicated architectures' rows, then their replicates, then the other rows
    (a long campaign has its label-noise ceiling early); the same rows and replicates either way."""
    order = []

    def recording(job):  # the order is what is tested: a row without training
        order.append((json.dumps(job.arch.to_dict(), sort_keys=True), job.seed))
        return train_mod.base_row(job, "ok", "") | {"metrics": {"acc_1d": 50.0}}

    monkeypatch.setattr(train_mod, "train_architecture", recording)
    args = campaign_args(tmp_path, 5, "0", "--replicates.n", "2", "--replicates.seeds", "[1]",
                         "--replicates.n_reps", "2", "--replicates.seed", "3")
    build_dataset.main([*args, "--replicates.first", "true"])
    with RowStore(tmp_path / "rows.sqlite") as store:
        rows, replicates = store.rows(), store.replicate_rows()
    assert len(rows) == 5 and len(replicates) == 2 and [seed for _, seed in order] == [0, 0, 1, 1, 0, 0, 0]
    replicated_stages = {stages for stages, seed in order if seed == 1}
    assert {stages for stages, _ in order[:2]} == replicated_stages  # their rows came first
    order.clear()
    build_dataset.main([*args, "--store", str(tmp_path / "last.sqlite")])  # the default: replicates last
    assert [seed for _, seed in order] == [0] * 5 + [1, 1] and {s for s, seed in order if seed == 1} == replicated_stages
    with RowStore(tmp_path / "last.sqlite") as store:
        assert {r["arch_id"] for r in store.replicate_rows()} == {r["arch_id"] for r in replicates}
        assert {r["arch_id"] for r in store.rows()} == {r["arch_id"] for r in rows}


def test_budget_threads_fix_the_rows_whatever_the_workers_get(tmp_path):
    """budget.threads: every job trains with that many torch threads (recorded per row), so the same
    campaign gives bit-identical rows on another machine; unset, stores made before it still match."""
    import torch

    first, second = tmp_path / "a", tmp_path / "b"
    threads = torch.get_num_threads()
    try:  # in-process jobs (workers 0) set the thread count of this process
        build_dataset.main(campaign_args(first, 2, "0", "--budget.threads", "1", "--threads_per_worker", "2"))
        build_dataset.main(campaign_args(second, 2, "0", "--budget.threads", "1", "--threads_per_worker", "1"))
    finally:
        torch.set_num_threads(threads)
    with RowStore(first / "rows.sqlite") as a, RowStore(second / "rows.sqlite") as b:
        rows_a, rows_b = a.rows(), b.rows()
    assert [r["threads"] for r in rows_a] == [1, 1]
    assert [r["metrics"] for r in rows_a] == [r["metrics"] for r in rows_b]
    with pytest.raises(UserError, match="budget.threads must be an integer >= 1"):
        build_dataset.main(campaign_args(tmp_path / "c", 2, "0", "--budget.threads", "0"))
    with pytest.raises(UserError, match=r"budget.threads \(4\) is more than the CPUs each Ray task reserves \(ray.num_cpus 2\)"):
        build_dataset.main(campaign_args(tmp_path / "d", 2, "0", "--budget.threads", "4", "--executor", "ray",
                                         "--ray.num_cpus", "2"))
    assert not (tmp_path / "d" / "rows.sqlite").exists()  # refused before the store is made
    from lightning_nas.campaign.campaign import Campaign, Sampling

    unset = Campaign.from_fit_config(None, [], train_mod.Budget(epochs=1), Sampling())
    assert "threads" not in unset.identity()["training"]


def test_the_batch_size_is_part_of_a_campaigns_identity(tmp_path):
    """Batches of 16 or 64 train different labels with the same epochs (4x the optimizer steps);
    a store made with the task's default batch size (as every store before it was recorded) still matches."""
    from lightning_nas.campaign.campaign import Campaign, Sampling

    def identity(**init_args):
        args = [f"--data.init_args.{k}={'null' if v is None else v}" for k, v in init_args.items()]
        return Campaign.from_fit_config(None, args, train_mod.Budget(epochs=1), Sampling()).identity()

    assert identity(batch_size=64) == identity() == identity(batch_size=None)  # 64: the digits default
    # Stores made before the batch size was recorded used these defaults: changing one would let such a
    # store accept rows of another batch size, so they are pinned here.
    from lightning_nas.data import CIFAR10DataModule, DigitsDataModule, KWSDataModule, VWWDataModule

    assert [m.task_defaults["batch_size"] for m in (DigitsDataModule, CIFAR10DataModule, KWSDataModule,
                                                    VWWDataModule)] == [64, 128, 100, 64]
    assert identity(batch_size=16)["task_args"]["batch_size"] == 16
    assert identity(batch_size=16) != identity(batch_size=32)
    with RowStore(tmp_path / "s.sqlite") as store:
        store.bind(identity(batch_size=16))
        with pytest.raises(UserError, match=r"task_args.batch_size \(16 stored, default now\)"):
            store.bind(identity())


def test_a_store_of_the_previous_format_resumes_and_is_migrated(tmp_path, monkeypatch, capsys):
    """A store written before campaigns trained through a fit config (identity: task, task_args,
    analog, budget) resumes with the equivalent campaign of today: nothing is trained again, its
    identity is upgraded (the old one kept); a different budget is still refused, naming the field."""
    from lightning_nas.campaign.campaign import Campaign, Sampling, hardware_record
    from lightning_nas.space import SPACE_VERSION

    campaign = Campaign.from_fit_config(None, ["--data.init_args.batch_size", "16"],
                                        train_mod.Budget(epochs=2, n_reps=3, threads=1), Sampling(n=3, max_params=20000))
    old = {"task": "lightning_nas.data.DigitsDataModule", "space_version": SPACE_VERSION,
           "task_args": {"batch_size": 16, "seed": 0, "train_fraction": 1.0, "val_fraction": 0.15, "test_fraction": 0.15},
           "analog": hardware_record(campaign.analog),
           "budget": {"epochs": 2, "digital_warmup_epochs": 0, "train_fraction": 1.0, "n_reps": 3, "lr": 0.05,
                      "t_inference": [1.0, 3600.0, 86400.0, 2592000.0], "seed": 0, "limit_train_batches": None,
                      "threads": 1}}
    path = tmp_path / "old.sqlite"
    archs = campaign.architectures((1, 8, 8), 10)
    with RowStore(path) as store:  # what the previous version wrote
        store.bind(old)
        for arch in archs[:2]:
            assert store.add({"arch_id": arch.id, "status": "ok", "metrics": {"acc_1d": 90.0}})
    trained = []
    monkeypatch.setattr(train_mod, "train_architecture",
                        lambda job: trained.append(job.arch_id) or train_mod.base_row(job) | {"metrics": {"acc_1d": 1.0}})
    args = ["--data.init_args.batch_size", "16", "--budget.epochs", "2", "--budget.n_reps", "3", "--budget.threads", "1",
            "--sampling.n", "3", "--sampling.max_params", "20000", "--store", str(path), "--campaign_dir", "null",
            "--workers", "0"]
    build_dataset.main(args)
    assert "2 already in" in capsys.readouterr().err and trained == [archs[2].id]  # only the missing one
    with sqlite3.connect(path) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    assert json.loads(meta["identity_previous"]) == old
    assert json.loads(meta["identity"]) == campaign.identity() and json.loads(meta["identity"])["version"] == 2
    build_dataset.main(args)  # the migrated store resumes as it is
    assert trained == [archs[2].id]
    other = tmp_path / "other.sqlite"
    with RowStore(other) as store:
        store.bind({**old, "budget": {**old["budget"], "epochs": 5}})
    with pytest.raises(UserError, match=r"training.trainer.max_epochs \(5 stored, 2 now\)"):
        build_dataset.main([*args, "--store", str(other)])


def test_replicates_first_without_replicates_announces_the_campaign_once(tmp_path, monkeypatch, capsys):
    """``replicates.first`` with ``replicates.n 0`` (the shipped config with replicates off) is one
    phase: one "campaign:" line and one progress bar, every architecture trained once."""
    trained = []
    monkeypatch.setattr(train_mod, "train_architecture",
                        lambda job: trained.append(job.arch_id) or train_mod.base_row(job) | {"metrics": {"acc_1d": 1.0}})
    build_dataset.main(["--budget.epochs", "1", "--budget.n_reps", "1", "--budget.threads", "1", "--sampling.n", "3",
                        "--sampling.max_params", "20000", "--replicates.first", "true", "--replicates.n", "0",
                        "--store", str(tmp_path / "s.sqlite"), "--campaign_dir", "null", "--workers", "0"])
    err = capsys.readouterr().err
    assert err.count("campaign: 3 architectures") == 1 and "0 already in" in err
    assert len(trained) == 3 == len(set(trained))


def test_the_shipped_store_resumes_with_the_shipped_campaign_config():
    """configs/digits/campaign.yaml (a fit config and a budget) is the campaign the shipped store was
    built with: its identity (or the upgrade of the identity it was written with) is that config's."""
    import yaml

    from lightning_nas.campaign.campaign import Campaign, Replicates, Sampling, upgrade_identity

    folder = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "digits"
    config = yaml.safe_load((folder / "campaign.yaml").read_text())  # its paths are relative to its folder
    campaign = Campaign.from_fit_config(str(folder / config["fit_config"]), [], train_mod.Budget(**config["budget"]),
                                        Sampling(**config["sampling"]), None, Replicates(**config["replicates"]))
    with RowStore(folder / config["store"], readonly=True) as store:
        stored = json.loads(store.conn.execute("SELECT value FROM meta WHERE key='identity'").fetchone()[0])
        assert upgrade_identity(stored) == campaign.identity()
        archs = campaign.architectures((1, 8, 8), 10)
        assert len(archs) == 1000 and not [a for a in archs if a.id not in store.ids(statuses=("ok", "diverged"))]


@pytest.mark.slow
def test_a_campaign_row_is_fit_of_its_saved_config(tmp_path, monkeypatch):
    """Each row's TensorBoard folder holds the config it trained with; ``fit --config`` of it trains
    the same row again: bit-identical drift metrics (same machine and threads)."""
    import torch

    from lightning_nas.cli import run_lightning_cli

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        build_dataset.main(campaign_args(tmp_path, 1, "0", "--budget.threads", "1", "--budget.limit_train_batches", "4",
                                         "--budget.epochs", "2", "--model.init_args.digital_warmup_epochs", "1"))
        with RowStore(tmp_path / "rows.sqlite") as store:
            row = store.rows()[0]
        saved = tmp_path / "tb" / row["arch_id"] / "config.yaml"
        assert saved.is_file() and row["status"] == "ok"
        torch.set_num_threads(1)
        run_lightning_cli(["fit", "--config", str(saved), "--trainer.logger.init_args.save_dir", str(tmp_path / "again")])
    finally:
        torch.set_num_threads(threads)
    again = json.loads((tmp_path / "again" / row["arch_id"] / "drift_metrics.json").read_text())
    assert {k.removeprefix("analog/"): v for k, v in again["metrics"].items()} == row["metrics"]
    assert again["samples"] == row["drift_samples"] and again["n_reps"] == 2
    # The row's learning curve: one entry per epoch, the warm-up epoch digital, then hardware-aware.
    curves = row["curves"]
    assert curves["epoch"] == [0, 1] and curves["hardware_aware"] == [False, True]
    assert all(0 <= v <= 100 for v in curves["val_acc"]) and all(math.isfinite(v) and v > 0 for v in curves["train_loss"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb" / row["arch_id"])).Reload()
    marks = [e.value for e in events.Scalars("train/hardware_aware")]
    vals = [e.value for e in events.Scalars("val/acc")]  # % as everywhere
    assert marks == [0.0, 1.0] and vals == pytest.approx(curves["val_acc"])  # fit's TensorBoard log has them too


def test_jobs_and_rows_are_typed_records():
    """A job is its resolved fit config (architecture, hardware, seed set) and round-trips through
    JSON; a row refuses fields and statuses it does not know, and leaves unset fields out of its JSON."""
    job = tiny_job(seed=3)
    assert train_mod.Job.from_json(job.to_json()) == job
    assert job.seed == 3 and job.config["drift"]["seed"] == 3 and job.config["data"]["init_args"]["seed"] == 0
    assert job.config["trainer"]["max_epochs"] == 1 and job.config["drift"]["n_reps"] == 1
    assert job.config["model"]["init_args"]["architecture"] == job.arch.to_dict()
    replicate = train_mod.seeded(job.config, 7)
    assert (replicate["seed_everything"], replicate["drift"]["seed"], replicate["data"]["init_args"]["seed"]) == (7, 7, 0)
    with pytest.raises(UserError, match="another version"):
        train_mod.Job.from_json(json.dumps({"version": 0, "config": {}, "task": "digits"}))
    row = train_mod.failed_row(job, "worker died")
    assert row.status == "failed" and row.arch_id == job.arch_id and row.epochs == 1 and row.seed == 3
    assert "metrics" not in row.to_dict() and train_mod.Row.from_dict(json.loads(row.to_json())) == row
    with pytest.raises(ValueError, match="unknown fields budget"):
        train_mod.Row.from_dict({**row.to_dict(), "budget": {}})


def test_a_campaign_needs_an_integer_seed_and_replicates_log_beside_their_row(tmp_path):
    """seed_everything true would draw an unrecorded seed in every worker: refused. A replicate logs
    (config.yaml, drift_metrics.json, events) in its own version folder, not over its row's run."""
    from lightning_nas.campaign.campaign import Campaign, Replicates, Sampling, replicate_jobs

    with pytest.raises(UserError, match="integer seed, got seed_everything True"):
        tiny_job("--seed_everything", "true")
    campaign = Campaign.from_fit_config(None, [], train_mod.Budget(epochs=1), Sampling(n=2, max_params=20000),
                                        str(tmp_path / "tb"), Replicates(n=1, seeds=[1]))
    archs = campaign.architectures((1, 8, 8), 10)
    with RowStore(tmp_path / "s.sqlite") as store:
        [replicate] = replicate_jobs(campaign, archs, store, "digits", 1, "cpu")
    row = campaign.jobs([replicate.arch], "digits", 1, "cpu")[0]
    logger = lambda job: job.config["trainer"]["logger"]["init_args"]  # noqa: E731
    assert (logger(row)["name"], logger(row)["version"]) == (replicate.arch_id, "")
    assert (logger(replicate)["name"], logger(replicate)["version"]) == (replicate.arch_id, "replicate_seed1")
    assert replicate.seed == 1 and replicate.config["drift"]["n_reps"] == 10


def test_the_identity_records_every_setting_of_the_projects_own_classes():
    """Model and drift settings are recorded whole (a changed default is another training), trainer
    options only where they differ from Lightning's defaults."""
    from lightning_nas.campaign.campaign import Campaign, Sampling

    training = Campaign.from_fit_config(None, [], train_mod.Budget(epochs=2), Sampling()).identity()["training"]
    assert training["model"]["lr"] == 0.05 and training["model"]["lr_schedule"] == "cosine"
    assert training["drift"]["n_reps"] == 5 and training["drift"]["t_inference"] == [1, 3600, 86400, 2592000]
    assert training["trainer"] == {"max_epochs": 2}
    assert "verbose" not in training["drift"] and "architecture" not in training["model"]

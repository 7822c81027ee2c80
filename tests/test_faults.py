"""Bad input and faults (issue 11): damaged files, a full disk, unwritable places, signals,
concurrent stores. Each gives one ``error:`` line (exit 2) or the documented behaviour, and
never loses what was already computed."""

import errno
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from lightning_nas.__main__ import main as cli_main
from lightning_nas.campaign.store import RowStore
from lightning_nas.commands import build_dataset, retrain
from lightning_nas.commands import search as search_cmd
from lightning_nas.errors import UserError
from lightning_nas.surrogate import SurrogatePredictor
from lightning_nas.surrogate.data import load_rows

SHIPPED_SURROGATE = ROOT / "surrogates" / "digits"
TINY_CAMPAIGN = ["--data.class_path", "lightning_nas.data.DigitsDataModule", "--sampling.n", "3",
                 "--sampling.max_params", "20000", "--budget.epochs", "1", "--budget.limit_train_batches", "2",
                 "--budget.n_reps", "2", "--campaign_dir", "null"]


def assert_one_error_line(proc, *fragments):
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- a damaged surrogate directory -------------------------------------------------------
def _meta(d):
    return json.loads((d / "metadata.json").read_text())


def _set_meta(d, meta):
    (d / "metadata.json").write_text(json.dumps(meta))


DAMAGES = {
    "model file missing": lambda d: (d / "avm_regressor.json").unlink(),
    "metadata truncated": lambda d: (d / "metadata.json").write_text((d / "metadata.json").read_text()[:200]),
    "model truncated": lambda d: (d / "acc_1d_ranker.json").write_text((d / "acc_1d_ranker.json").read_text()[:500]),
    "no calibration": lambda d: _set_meta(d, {k: v for k, v in _meta(d).items() if k != "acc_1d_calibration"}),
    "empty calibration": lambda d: _set_meta(d, {**_meta(d), "acc_1d_calibration": {"scores": [], "values": []}}),
    "no analog": lambda d: _set_meta(d, {k: v for k, v in _meta(d).items() if k != "analog"}),
    "analog of the wrong type": lambda d: _set_meta(d, {**_meta(d), "analog": {"g_max": "high"}}),
    "metadata is a list": lambda d: (d / "metadata.json").write_text("[1, 2, 3]"),
    "metadata latin-1": lambda d: (d / "metadata.json").write_bytes(b"{\"x\": \"caf\xe9\"}"),
    "binary garbage": lambda d: (d / "std_regressor.json").write_bytes(os.urandom(3000)),
    "ranker and regressor swapped": lambda d: (
        (d / "acc_1d_ranker.json").rename(d / "tmp"), (d / "avm_regressor.json").rename(d / "acc_1d_ranker.json"),
        (d / "tmp").rename(d / "avm_regressor.json")),
}


@pytest.fixture
def surrogate_copy(tmp_path):
    target = tmp_path / "sur"
    shutil.copytree(SHIPPED_SURROGATE, target)
    SurrogatePredictor.load(target)  # intact, it loads
    return target


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_surrogate_is_one_clear_error(surrogate_copy, damage):
    DAMAGES[damage](surrogate_copy)
    with pytest.raises(UserError, match=f"surrogate {surrogate_copy}.*(fit-surrogate)"):
        SurrogatePredictor.load(surrogate_copy)


def test_search_with_a_damaged_surrogate_is_one_line(run_cli, surrogate_copy, tmp_path):
    DAMAGES["ranker and regressor swapped"](surrogate_copy)
    proc = run_cli("search", "--predictor", str(surrogate_copy), "--out_dir", str(tmp_path / "s"))
    assert_one_error_line(proc, "acc_1d_ranker.json", "rebuild it with fit-surrogate")


# -- the campaign store --------------------------------------------------------------------
def _store_with_rows(path, n=3):
    with RowStore(path) as store:
        store.bind({"task": "t"})
        for i in range(n):
            store.add({"arch_id": f"a{i}", "status": "ok", "arch": {}, "metrics": {}})
    return path


@pytest.mark.parametrize("damage", ["garbage header", "half truncated", "empty tables"])
def test_a_damaged_store_is_refused_and_left_untouched(tmp_path, damage):
    path = _store_with_rows(tmp_path / "rows.sqlite")
    data = path.read_bytes()
    if damage == "garbage header":
        data = os.urandom(100) + data[100:]
    elif damage == "half truncated":
        data = data[: len(data) // 2]
    else:
        sqlite3.connect(tmp_path / "other.sqlite").execute("CREATE TABLE x (y)").connection.commit()
        data = (tmp_path / "other.sqlite").read_bytes()
    path.write_bytes(data)
    for readonly in (False, True):
        with pytest.raises(UserError, match="not a readable campaign store.*left as it is"):
            RowStore(path, readonly=readonly)
    assert path.read_bytes() == data
    with pytest.raises(UserError, match="not a readable campaign store"):
        load_rows(path)


def test_build_dataset_on_a_corrupt_store_is_one_line(run_cli, tmp_path):
    store = tmp_path / "rows.sqlite"
    store.write_bytes(b"this is not a database" * 100)
    proc = run_cli("build-dataset", *TINY_CAMPAIGN, "--store", str(store))
    assert_one_error_line(proc, str(store), "not a readable campaign store")
    assert store.read_bytes() == b"this is not a database" * 100


def test_a_store_is_read_without_writing_to_it(tmp_path):
    path = _store_with_rows(tmp_path / "rows.sqlite")
    before = path.read_bytes()
    with RowStore(path, readonly=True) as store:
        assert len(store) == 3
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.add({"arch_id": "new", "status": "ok"})
    assert path.read_bytes() == before
    with pytest.raises(UserError, match="no campaign store at"):
        RowStore(tmp_path / "missing.sqlite", readonly=True)


def _open_and_bind(args):
    path, barrier = args
    barrier.wait()
    with RowStore(path) as store:
        store.bind({"task": "same"})
    return "ok"


def test_concurrent_opens_of_a_fresh_store_are_safe(tmp_path):
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        for trial in range(15):
            barrier = manager.Barrier(3)
            with ctx.Pool(3) as pool:
                assert pool.map(_open_and_bind, [(tmp_path / f"s{trial}.sqlite", barrier)] * 3) == ["ok"] * 3


def test_a_second_campaign_on_a_store_in_use_is_refused(tmp_path):
    with RowStore(tmp_path / "rows.sqlite") as first:
        first.lock()
        with pytest.raises(UserError, match=f"in use by a running campaign \\(pid {os.getpid()}"):
            RowStore(tmp_path / "rows.sqlite").lock()
    with RowStore(tmp_path / "rows.sqlite") as again:  # released on close (and when a process dies)
        again.lock()


def test_a_row_that_cannot_be_stored_stops_the_campaign_and_is_retrained_next_run(tmp_path, monkeypatch):
    store = tmp_path / "rows.sqlite"
    args = [*TINY_CAMPAIGN, "--store", str(store), "--workers", "0"]
    real_add, calls = RowStore.add, []

    def disk_full_on_second(self, row):
        calls.append(row.arch_id)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real_add(self, row)

    monkeypatch.setattr(RowStore, "add", disk_full_on_second)
    with pytest.raises(UserError, match="could not store the row of .*database or disk is full.*rerun the same command"):
        build_dataset.main(args)
    with RowStore(store, readonly=True) as s:
        assert [r["arch_id"] for r in s.rows()] == calls[:1]  # the first row is kept
    monkeypatch.setattr(RowStore, "add", real_add)
    build_dataset.main(args)  # the next run trains the rest, the lost one included
    with RowStore(store, readonly=True) as s:
        ids = [r["arch_id"] for r in s.rows()]
    assert len(ids) == 3 and calls[1] in ids


# -- outputs: a full disk or an unwritable place ----------------------------------------------
def _search_args(out, *extra):
    return ["--predictor", '{"class_path": "stub_predictor.TargetPredictor"}', "--task", "digits", "--out_dir", str(out),
            "--search.population", "20", "--search.iterations", "3", "--search.survivors", "10",
            "--search.max_params", "200000", *extra]


def test_search_outputs_are_replaced_as_a_whole_or_not_at_all(tmp_path, monkeypatch):
    out = tmp_path / "s"
    search_cmd.main(_search_args(out, "--top_k", "3"))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert Path("winners/winner_3.yaml") in before

    import lightning_nas.search.outputs as outputs

    real = outputs.write_csv

    def full_disk(path, rows, columns=None):
        if Path(path).name == "history.csv":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, rows, columns)

    monkeypatch.setattr(outputs, "write_csv", full_disk)
    with pytest.raises(OSError):
        search_cmd.main(_search_args(out, "--top_k", "1", "--search.seed", "7"))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # every old output intact, no staging left behind
    monkeypatch.setattr(outputs, "write_csv", real)
    search_cmd.main(_search_args(out, "--top_k", "1", "--search.seed", "7"))
    assert sorted(p.name for p in (out / "winners").iterdir()) == ["winner_1.yaml"]  # no old winner mixed in


def test_disk_full_is_one_line_that_says_what_to_do(capsys, monkeypatch):
    from lightning_nas.commands import space

    def full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.csv")

    monkeypatch.setattr(space, "main", full)
    assert cli_main(["space"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: No space left on device: /data/out.csv; free disk space and rerun the same command "
                   "(finished work is kept)"]


def test_unwritable_output_places_are_refused_before_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="search out_dir .* is not writable"):
        search_cmd.main(_search_args(blocker / "out"))
    winner = tmp_path / "w.yaml"
    winner.write_text("architecture: {out_channel0: 8, kernel0: 3, stages: [{R: 1}]}\n")
    with pytest.raises(UserError, match="retrain out_dir .* is not writable"):
        retrain.main(["--fit_config", str(ROOT / "configs" / "digits" / "fit.yaml"), "--winners", str(winner),
                      "--baseline", "resnet20", "--out_dir", str(blocker / "out")])


# -- input checked before work -------------------------------------------------------------
@pytest.mark.parametrize("extra,message", [
    (["--top_k", "0"], "top_k must be >= 1"),
    (["--top_k", "-1"], "top_k must be >= 1"),
    (["--input_shape", "[1, 0, 8]"], "input_shape must be three positive integers"),
    (["--num_classes", "0"], "num_classes must be an integer >= 2"),
])
def test_search_options_are_checked(tmp_path, extra, message):
    with pytest.raises(UserError, match=message):
        search_cmd.main(_search_args(tmp_path / "s", *extra))
    assert not (tmp_path / "s" / "winners").exists()


def test_retrain_with_nothing_to_train_is_refused(tmp_path):
    with pytest.raises(UserError, match="nothing to retrain"):
        retrain.main(["--fit_config", str(ROOT / "configs" / "digits" / "fit.yaml"), "--top_k", "0", "--baseline", "null",
                      "--out_dir", str(tmp_path / "r")])


@pytest.mark.parametrize("override,message", [
    ("{forward.out_noise: abc}", "must be a number"),
    ("{forward.is_perfect: 3}", "must be true or false"),
    ("{forward.noise_management: 5}", "must be one of"),
    ("{forward.nope: 1}", "has no field 'nope'"),
])
def test_bad_rpu_overrides_are_refused_before_the_campaign(tmp_path, override, message):
    with pytest.raises(UserError, match=message):
        build_dataset.main([*TINY_CAMPAIGN, "--store", str(tmp_path / "rows.sqlite"),
                            "--model.init_args.analog.rpu_overrides", override])
    assert not (tmp_path / "rows.sqlite").exists() or RowStore(tmp_path / "rows.sqlite").__len__() == 0


# -- the command line ----------------------------------------------------------------------
@pytest.mark.parametrize("args,fragments", [
    (["--bogus", "1"], ["unrecognized arguments: --bogus 1", "python -m lightning_nas fit --help"]),
    (["--trainer.max_epochs", "abc"], ["invalid value 'abc' for trainer.max_epochs"]),
    (["--model.init_args.lr", "xyz"], ["invalid value 'xyz' for model.init_args.lr"]),
    (["--model.init_args.lrr", "1"], ["unknown option model.init_args.lrr"]),
    (["--trainer.max_epochs", "-2"], ["digital_warmup_fraction needs a positive trainer.max_epochs", "got -2"]),
    (["--trainer.max_epochs", "-2", "--model.init_args.digital_warmup_fraction", "0"],
     ["max_epochs` must be a non-negative integer or -1"]),  # without the recipe's warm-up: Lightning's own check
    (["--trainer.max_epochz", "2"], ["unrecognized arguments: --trainer.max_epochz 2", "did you mean --trainer.max_epochs?"]),
    (["--ckpt_path", "/nonexistent/x.ckpt"], ["no such file"]),
    (["--ckpt_path", "EMPTY"], ["is not a readable checkpoint"]),
    (["--ckpt_path", "GARBAGE"], ["is not a readable checkpoint"]),
    (["--ckpt_path", "DIR"], ["is not a file"]),
    (["--ckpt_path", "NOT_LIGHTNING"], ["is not a Lightning checkpoint"]),
])
def test_fit_input_errors_are_one_line(cli, tmp_path, args, fragments):
    import torch

    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "garbage.ckpt").write_bytes(os.urandom(5000))
    torch.save({"weights": [1, 2]}, tmp_path / "plain.ckpt")
    names = {"EMPTY": "empty.ckpt", "GARBAGE": "garbage.ckpt", "DIR": ".", "NOT_LIGHTNING": "plain.ckpt"}
    args = [str(tmp_path / names[a]) if a in names else a for a in args]
    proc = cli("test" if "--ckpt_path" in args else "fit", "--config", str(ROOT / "configs" / "digits" / "fit.yaml"),
               *args)
    assert_one_error_line(proc, *fragments)
    assert "Seed set" not in proc.stderr


def test_a_broken_pipe_to_stdout_is_quiet_but_other_broken_pipes_are_not(monkeypatch):
    proc = subprocess.run(f"{sys.executable} -m lightning_nas space --sample 2000 --max_params 50000 | head -3",
                          shell=True, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert len(proc.stdout.splitlines()) == 3 and "Traceback" not in proc.stderr
    from lightning_nas.commands import space

    def worker_pipe(argv):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")  # e.g. a campaign worker that could not start

    monkeypatch.setattr(space, "main", worker_pipe)
    with pytest.raises(BrokenPipeError):
        cli_main(["space"])


def test_space_sample_streams(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "lightning_nas", "space", "--sample", "100000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        start, lines = time.time(), []
        while len(lines) < 20 and time.time() - start < 60:
            line = proc.stdout.readline()
            if line.startswith("  ") and len(line.split()) >= 3 and len(line.split()[0]) == 12:
                lines.append(line)
        assert len(lines) == 20  # the first samples arrive while the rest are still being drawn
    finally:
        proc.kill()
        proc.wait()


# -- signals ---------------------------------------------------------------------------------
def _session_processes(sid):
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_sigterm_stops_the_campaign_keeps_its_rows_and_leaves_no_process(tmp_path):
    store = tmp_path / "rows.sqlite"
    cmd = [sys.executable, "-m", "lightning_nas", "build-dataset", *TINY_CAMPAIGN, "--sampling.n", "40",
           "--store", str(store), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(_session_processes(proc.pid)) >= 2 and store.exists():  # a worker is running
            with sqlite3.connect(store, timeout=5) as conn:
                try:
                    if conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0] >= 1:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # to the driver only, as `timeout` does
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    stopped = time.monotonic() - sent
    assert proc.returncode == 143, err[-2000:]
    assert stopped < 4.0, f"took {stopped:.1f} s to stop"  # ~1 s grace for the worker (STOP_GRACE_S), not 10
    assert "terminated (SIGTERM)" in err and "run the same command again" in err
    for _ in range(50):
        if not _session_processes(proc.pid):
            break
        time.sleep(0.2)
    assert _session_processes(proc.pid) == []  # no orphan worker
    with RowStore(store, readonly=True) as s:
        assert 1 <= len(s) < 40


def test_a_missing_dataset_stops_a_campaign_before_its_store_is_bound(tmp_path):
    store = tmp_path / "rows.sqlite"
    with pytest.raises(UserError, match="CIFAR-10 not found"):
        build_dataset.main(["--data.class_path", "lightning_nas.data.CIFAR10DataModule", "--data.init_args.data_dir",
                            str(tmp_path / "nowhere"), "--sampling.n", "2", "--budget.epochs", "1", "--store", str(store),
                            "--campaign_dir", "null", "--workers", "0"])
    with RowStore(store, readonly=True) as s:  # nothing recorded: the store is free for the right campaign
        assert s.conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0 and len(s) == 0


def test_result_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); results must be readable like any file the user writes."""
    import os
    import stat

    from lightning_nas.files import write_csv, write_text

    old = os.umask(0o022)
    try:
        text = write_text(tmp_path / "a.txt", "x")
        table = write_csv(tmp_path / "b.csv", [{"a": 1}])
    finally:
        os.umask(old)
    assert stat.S_IMODE(text.stat().st_mode) == stat.S_IMODE(table.stat().st_mode) == 0o644

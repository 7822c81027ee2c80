"""build-dataset and retrain against a real Ray cluster, started the way Ray 2.60 documents it
(``ray start --head``, token authentication as Ray's default leaves it: on, since a token exists)."""

import csv
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray tests need the dev extra (pip install -e '.[dev]')")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
CAMPAIGN = ["--sampling.n", "8", "--sampling.method", "uniform", "--sampling.max_params", "20000",
            "--budget.epochs", "1", "--budget.limit_train_batches", "20", "--budget.n_reps", "1",
            "--budget.threads", "1", "--campaign_dir", "null"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class Cluster:
    """A one-node Ray cluster on the loopback interface, in its own temporary Ray directory and
    home (the token Ray keeps in ~/.ray goes there, not into the user's home)."""

    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        self.env.update(HOME=self.home, PYTHONWARNINGS="ignore", RAY_USAGE_STATS_ENABLED="0",
                        RAY_gcs_rpc_server_reconnect_timeout_s="5")  # a driver whose head died ends in 5 s
        subprocess.run([RAY, "get-auth-token", "--generate"], env=self.env, check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run([RAY, "start", "--head", "--port", str(self.port), "--num-cpus", "2", "--node-ip-address",
                        "127.0.0.1", "--temp-dir", self.temp, "--include-dashboard", "false",
                        "--disable-usage-stats"], env=self.env, check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        """Kill every process of this cluster (those that name its Ray directory), and only those."""
        for pid in processes_mentioning(self.temp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 30
        while processes_mentioning(self.temp) and time.time() < deadline:
            time.sleep(0.2)

    def run(self, *args: str, env: dict = None, **kwargs):
        return subprocess.Popen([sys.executable, "-m", "lightning_nas", *args], cwd=ROOT,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, **kwargs)


@pytest.fixture
def cluster():
    real_ray_dir = Path.home() / ".ray"
    before = sorted(p.name for p in real_ray_dir.iterdir()) if real_ray_dir.is_dir() else None
    c = Cluster()
    try:
        yield c
    finally:
        c.stop()
        assert processes_mentioning(c.temp) == []  # every Ray process it started is gone
        shutil.rmtree(c.home, ignore_errors=True)
        shutil.rmtree(c.temp, ignore_errors=True)
    after = sorted(p.name for p in real_ray_dir.iterdir()) if real_ray_dir.is_dir() else None
    assert after == before  # nothing of Ray in the user's home


def count(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    except sqlite3.Error:
        return 0


def rows(store: Path) -> dict:
    import json

    with sqlite3.connect(store) as conn:
        return {r[0]: json.loads(r[1]) for r in conn.execute("SELECT arch_id, row FROM rows")}


def test_a_campaign_on_a_token_cluster_survives_its_head_and_retrain_runs_there(cluster, tmp_path):
    store = tmp_path / "rows.sqlite"
    campaign = ["build-dataset", *CAMPAIGN, "--store", str(store), "--executor", "ray", "--ray.address",
                cluster.address]
    cluster.start()
    # The driver finds the cluster's token (~/.ray/auth_token of its home) with RAY_AUTH_MODE unset.
    proc = cluster.run(*campaign)
    deadline = time.time() + 240
    while count(store) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    cluster.stop()  # the head node dies mid-campaign
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err[-2000:]
    before = rows(store)
    assert 2 <= len(before) < 8, err[-2000:]
    cluster.start()
    proc = cluster.run(*campaign)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert f"{len(before)} already in" in err
    after = rows(store)
    assert len(after) == 8 and all(r["status"] == "ok" for r in after.values())  # none lost, none twice
    assert all(after[k] == v for k, v in before.items())  # the rows finished before the stop are untouched
    # retrain on the same cluster
    winners = tmp_path / "winners"
    winners.mkdir()
    (winners / "winner_1.yaml").write_text("architecture: {out_channel0: 8, kernel0: 3, stages: [{R: 1}]}\n")
    proc = cluster.run("retrain", "--fit_config", str(ROOT / "configs" / "digits" / "fit.yaml"), "--winners",
                       str(winners), "--baseline", "null", "--out_dir", str(tmp_path / "r"), "--executor", "ray",
                       "--ray.address", cluster.address, "--fit_args",
                       '["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--drift.n_reps", "1"]')
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert [r["name"] for r in csv.DictReader((tmp_path / "r" / "comparison.csv").open())] == ["winner_1"]
    # A wrong token: one line that says authentication, exit 2 (not "no cluster")
    proc = cluster.run(*campaign[:-2], "--ray.address", cluster.address, "--store", str(tmp_path / "x.sqlite"),
                       env={"RAY_AUTH_TOKEN": "not-the-token"})
    _, err = proc.communicate(timeout=300)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert "refused this driver: its authentication token is missing or incorrect" in errors[0]
    assert "RAY_AUTH_TOKEN" in errors[0] and "InvalidAuthToken" not in err  # Ray's own retry log is not shown
    # No cluster at all: said at once, differently
    cluster.stop()
    start = time.time()
    proc = cluster.run(*campaign, env={})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and f"error: no Ray cluster at '{cluster.address}'" in err
    assert time.time() - start < 60

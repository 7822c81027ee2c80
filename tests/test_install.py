"""A non-editable install (issue 33 item 1) carries the shipped configs, the digits campaign and its
surrogate: from an empty directory, the installed ``lightning-nas`` runs the shipped digits search and
``space``, writes only where it is pointed, and refuses to write into its own copy of the files."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import ROOT
from test_paths import assert_untouched, tree

TOP_SKIPPED = {".venv", ".git", "build", "dist", "runs", "data", "lightning_logs", ".pytest_cache", "tmp", "mutants"}
"""Folders of the checkout root that are not sources (environments, outputs, datasets); every ``.venv*`` too."""


def run(*args, cwd, env=None, timeout=600):
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with lightning-nas installed from a wheel of this checkout (built from a copy, so the
    build writes nothing here); its dependencies come from this environment through a .pth file."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=lambda folder, names: [
        n for n in names if (Path(folder) == ROOT and (n in TOP_SKIPPED or n.startswith(".venv"))) or n == "__pycache__"
        or n.endswith((".egg-info", ".sqlite-wal", ".sqlite-shm", ".lock"))])
    proc = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", source,
               "-w", tmp / "wheels", cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next((tmp / "wheels").glob("lightning_nas-*.whl"))
    venv = tmp / "venv"
    proc = run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    python = venv / "bin" / "python"
    proc = run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, xgboost, ... of .venv
    return venv, site, wheel


@pytest.mark.slow
def test_the_installed_package_runs_the_shipped_search_and_space_from_anywhere(installed, tmp_path, capsys):
    venv, site, wheel = installed
    python, cli = venv / "bin" / "python", venv / "bin" / "lightning-nas"
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    where = run(python, "-c", "import lightning_nas; print(lightning_nas.__file__)", cwd=work).stdout.strip()
    assert Path(where) == site / "lightning_nas" / "__init__.py"  # the package is the install's, not the checkout's
    shipped = site / "lightning_nas" / "shipped"
    assert (shipped / "datasets" / "digits_surrogate.sqlite").stat().st_size == (ROOT / "datasets" / "digits_surrogate.sqlite").stat().st_size
    installed_files = tree(shipped)
    checkout_before = tree()

    proc = run(cli, "configs", "--root", cwd=work)
    assert proc.returncode == 0 and proc.stdout == f"{shipped}\n", proc.stderr
    listed = run(cli, "configs", cwd=work).stdout.splitlines()
    assert str(shipped / "configs" / "digits" / "search.yaml") in listed and len(listed) == 1 + 21
    config = shipped / "configs" / "digits" / "search.yaml"
    budget = ["--search.iterations", "2", "--search.population", "10", "--search.survivors", "8"]
    proc = run(cli, "search", "--config", config, *budget, "--out_dir", out, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == 14 and summary["task"]["name"] == "digits"
    assert sorted(p.name for p in out.iterdir()) == ["best_so_far.png", "history.csv", "pareto.csv", "pareto.png",
                                                     "summary.json", "winners"]
    winners = sorted(p.name for p in (out / "winners").iterdir())  # the feasible ones of 14, at most top_k 3
    assert 1 <= len(summary["winners"]) <= 3 and winners == [f"winner_{k}.yaml" for k in range(1, len(summary["winners"]) + 1)]
    # The same search from the checkout finds the same winners with the same predictions.
    from lightning_nas.__main__ import main

    assert main(["search", "--config", str(ROOT / "configs/digits/search.yaml"), *budget,
                 "--out_dir", str(tmp_path / "checkout_out")]) == 0
    capsys.readouterr()
    here = json.loads((tmp_path / "checkout_out" / "summary.json").read_text())
    assert summary["winners"] == here["winners"] and summary["winners"][0]["arch_id"]
    assert (out / "history.csv").read_text() == (tmp_path / "checkout_out" / "history.csv").read_text()

    proc = run(cli, "space", "--sample", "3", "--input_shape", "[1, 8, 8]", "--max_params", "100000", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distinct architectures: 388286007948448512" in proc.stdout
    samples = [line for line in proc.stdout.splitlines() if line.startswith("  ") and len(line.split()) >= 8
               and len(line.split()[0]) == 12 and line.split()[1].replace(",", "").isdigit()]
    assert len(samples) == 3 and all(int(s.split()[1].replace(",", "")) <= 100000 for s in samples)

    # Without --out_dir the config's own out_dir (relative to it) lies in site-packages: refused, in one line.
    proc = run(cli, "search", "--config", config, *budget, cwd=work)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: search out_dir {shipped / 'runs' / 'search_digits'} is inside the installed "
                                  "package's shipped files")

    assert os.listdir(work) == []  # nothing in the current directory
    assert tree(shipped) == installed_files  # nor in the installed copy
    assert_untouched(checkout_before, tree())  # nor in the checkout

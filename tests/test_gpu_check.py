"""``benchmarks/gpu_check.sh`` runs in parts that each fit one device call (10 minutes): the part
names select the sections, an unknown part is one error line. Checked without a GPU: a stand-in
``nvidia-smi`` and ``PY=echo`` (every Python command is printed instead of run)."""

import os
import subprocess

import pytest

from conftest import ROOT

SECTIONS = {"tests": ["the gpu tests"], "overhead": ["host syncs", "overhead per step"],
            "campaign": ["campaign cost", "campaign throughput"]}


def run(tmp_path, *parts):
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'Stand-in GPU, 1 MiB'\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "OUT": str(tmp_path), "PY": "echo"}
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *parts], env=env,
                          capture_output=True, text=True, timeout=60)


def headings(stdout):
    return [line for line in stdout.splitlines() if line.startswith("== ")]


@pytest.mark.parametrize("parts", [["tests"], ["overhead", "campaign"], []], ids=["tests", "two", "all"])
def test_the_parts_named_run_and_only_they(tmp_path, parts):
    proc = run(tmp_path, *parts)
    assert proc.returncode == 0, proc.stderr
    wanted = [s for p in (parts or list(SECTIONS)) for s in SECTIONS[p]]
    seen = headings(proc.stdout)
    assert all(any(w in h for h in seen) for w in wanted)
    unwanted = [s for p in SECTIONS if p not in (parts or list(SECTIONS)) for s in SECTIONS[p]]
    assert not any(u in h for u in unwanted for h in seen)
    assert (tmp_path / "gpu.txt").read_text().startswith("Stand-in GPU")


def test_an_unknown_part_is_one_error_line_before_anything_runs(tmp_path):
    proc = run(tmp_path, "tests", "overheads")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["error: unknown part 'overheads' (tests, overhead or campaign)"]
    assert not (tmp_path / "gpu.txt").exists()

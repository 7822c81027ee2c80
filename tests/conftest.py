import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli(tmp_path):
    """Run ``python -m lightning_nas ARGS`` in ``tmp_path``; returns the CompletedProcess."""

    def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        return subprocess.run([sys.executable, "-m", "lightning_nas", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=timeout)

    return run

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


@pytest.fixture(scope="session")
def native_kernel():
    """The native periphery kernel, built (or taken from the cache) once per session."""
    from lightning_nas import periphery

    try:
        return periphery.native_library()
    except RuntimeError as err:  # e.g. no C compiler: `auto` then runs eager (tested)
        pytest.skip(f"native kernel unavailable: {err}")


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need a CUDA device: skipped (with the reason) where there is none."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device (none visible)")
        for item in gpu_tests:
            item.add_marker(skip)

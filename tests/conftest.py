import os
import subprocess
import warnings
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


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``python -m lightning_nas ARGS`` in this process, in ``tmp_path`` (no interpreter and import
    start-up: about 1 s instead of 7 for a command that stops at its arguments); returns a
    CompletedProcess. An exception ``main`` lets through fails the test, so no traceback passes."""
    from lightning_nas.__main__ import main

    def run(*args: str) -> subprocess.CompletedProcess:
        monkeypatch.chdir(tmp_path)
        capsys.readouterr()
        with warnings.catch_warnings():  # LightningCLI notes that pytest's own command line is not its args
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return run


@pytest.fixture(scope="session")
def native_kernel():
    """The native periphery kernel, built (or taken from the cache) once per session."""
    from lightning_nas import periphery

    try:
        return periphery.native_library()
    except RuntimeError as err:  # e.g. no C compiler: `auto` then runs eager (tested)
        pytest.skip(f"native kernel unavailable: {err}")


def pytest_generate_tests(metafunc):
    """A ``gpu`` test that takes the ``device`` argument runs once per device: ``cpu`` everywhere and
    ``cuda`` (skipped where no CUDA device is visible, see below). A ``gpu`` test without ``device``
    needs CUDA itself."""
    if "device" in metafunc.fixturenames and metafunc.definition.get_closest_marker("gpu"):
        import torch

        metafunc.parametrize("device", [pytest.param(torch.device("cpu"), id="cpu"),
                                        pytest.param(torch.device("cuda"), id="cuda")])


@pytest.fixture
def device():
    """The device of a test that takes ``device`` without the ``gpu`` marker: the CPU."""
    import torch

    return torch.device("cpu")


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need a CUDA device, except their ``cpu`` variants: skipped (with the reason) where
    there is none. ``pytest -m gpu`` selects every test that also runs on CUDA."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device (none visible)")
        for item in gpu_tests:
            params = getattr(item, "callspec", None)
            on = params.params.get("device") if params is not None else None
            if on is None or on.type != "cpu":
                item.add_marker(skip)


def load_file(path: Path, name: str):
    """The Python module in ``path`` (a script or hook that is not a package), imported as ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _comparable(name: str) -> bool:
    """Not one of aihwkit's ``analog_ctx`` entries: a constant placeholder in aihwkit 1.1.0; in 1.2.0 a
    metadata-only view of the tile's weights (they are in the state as ``tile.weight``) that refuses
    to be read (``clone``, ``cpu``, ``torch.equal`` raise)."""
    return not name.endswith("analog_ctx")


def tensor_state(module) -> dict:
    """``module.state_dict()``'s tensors to compare (:func:`_comparable`)."""
    import torch

    return {k: v for k, v in module.state_dict().items() if torch.is_tensor(v) and _comparable(k)}


def parameter_state(module) -> dict:
    """``module``'s parameters to compare (:func:`_comparable`), detached copies."""
    return {k: p.detach().clone() for k, p in module.named_parameters() if _comparable(k)}

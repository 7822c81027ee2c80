"""The shape of the package: what imports what, what gets installed, docs generated from code."""

import subprocess
import sys
import tomllib

from conftest import ROOT
from lightning_nas.analog import PRESETS, preset_differences, preset_table


def test_surrogate_and_search_import_neither_torch_nor_aihwkit(tmp_path):
    code = ("import sys, lightning_nas.surrogate, lightning_nas.search.core, lightning_nas.search.outputs, lightning_nas.search.strategies.analognas_ea, lightning_nas.search.strategies.nsga2, lightning_nas.search.strategies.tpe, lightning_nas.search.strategies.reinforce, lightning_nas.hardware_cost, "
            "lightning_nas.surrogate.fitting as f; "  # fitting imports the MLP (torch): checked below
            "print(sorted(m for m in ('torch', 'aihwkit') if m in sys.modules))")
    light = ("import sys, lightning_nas.surrogate, lightning_nas.search.core, lightning_nas.search.outputs, lightning_nas.search.strategies.analognas_ea, lightning_nas.search.strategies.nsga2, lightning_nas.search.strategies.tpe, lightning_nas.search.strategies.reinforce, lightning_nas.hardware_cost, "
             "lightning_nas.analog, lightning_nas.space, lightning_nas.commands.search; "
             "print(sorted(m for m in ('torch', 'aihwkit', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", light], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "[]"
    heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert "aihwkit" not in heavy.stdout  # fitting needs torch for the MLP, never aihwkit


def test_importing_the_package_changes_no_global_state(tmp_path):
    code = ("import torch, lightning, aihwkit.nn; before = set(torch.serialization.get_safe_globals()); "
            "import lightning_nas.analog, lightning_nas.module, lightning_nas.conversion, lightning_nas.cli; "
            "print(set(torch.serialization.get_safe_globals()) == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "True"


def test_callbacks_are_installed_inside_the_package(tmp_path):
    code = ("import importlib.util, lightning_nas.callbacks as c; "
            "print(importlib.util.find_spec('callbacks') is None, c.DriftEvaluation.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.split() == ["True", "lightning_nas.callbacks.drift_evaluation"]


def test_every_package_folder_is_listed_in_pyproject():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "lightning_nas").rglob("__init__.py")}
    shipped = {f"lightning_nas.shipped.{folder}": folder for folder in ("configs", "datasets", "surrogates")}
    assert found | {"lightning_nas.callbacks"} | set(shipped) == listed
    assert tool["package-dir"] == {"lightning_nas.callbacks": "callbacks", **shipped}
    # The wheel carries every config, the digits campaign and its surrogate (tests/test_install.py installs it).
    data = tool["package-data"]
    assert data["lightning_nas.shipped.configs"] == ["*/*.yaml"] and data["lightning_nas.shipped.surrogates"] == ["digits/*"]
    assert all((ROOT / "datasets" / name).is_file() for name in data["lightning_nas.shipped.datasets"])


def test_presets_state_only_their_differences_and_the_documented_table_is_generated():
    assert preset_differences("pcm_no_hwa") == {"weight_noise_std": 0.0}
    assert preset_differences("pcm_hwa") == {}
    for name in PRESETS:
        assert PRESETS[name].preset == name
        PRESETS[name].resolved()  # every preset is valid
    assert preset_table() in (ROOT / "docs" / "reference" / "configuration.md").read_text()

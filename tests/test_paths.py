"""Paths belong to the checkout, not to the user (issue 33 item 1): a relative path written in a config
file is relative to that file's folder, one given on the command line to the current directory; the
shipped configs work from any directory; no output lands where the user did not point."""

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT
from lightning_nas import checkout
from lightning_nas.__main__ import main as cli_main
from lightning_nas.campaign import train as train_mod
from lightning_nas.campaign.store import RowStore
from lightning_nas.commands import build_dataset, retrain
from lightning_nas.commands import search as search_cmd
from lightning_nas.parsing import CONFIG_PATHS, CommandParser, with_config_paths

SKIPPED = {".venv", ".git", "build", "__pycache__", ".pytest_cache"}
"""Folders left out (and every ``.venv*``: the Makefile's venvs of other Python versions, e.g. ``.venv312``)."""


def tree(root: Path = ROOT) -> dict[str, tuple[int, int]]:
    """Every file of the checkout (without .venv*, .git, build/, caches) with its size and mtime."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED and not d.startswith(".venv") and not d.endswith(".egg-info")]
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            files[os.path.relpath(os.path.join(folder, name), root)] = (stat.st_size, stat.st_mtime_ns)
    return files


WATCHED = ("configs/", "datasets/", "surrogates/", "runs/")
"""Where a command could write by mistake: the shipped files, the outputs, and (below) the checkout root."""


def assert_untouched(before: dict, after: dict) -> None:
    """No file of the checkout appeared or vanished, and none changed in :data:`WATCHED` folders or at
    its root. (Edits of the sources elsewhere are left out: they may be someone's work in progress.)"""
    assert sorted(set(after) ^ set(before)) == []
    changed = [p for p in after if after[p] != before[p] and (p.startswith(WATCHED) or os.sep not in p)]
    assert changed == []


def test_a_configs_relative_paths_are_relative_to_its_folder_the_command_lines_to_the_cwd(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "configs" / "task"
    folder.mkdir(parents=True)
    (folder / "search.yaml").write_text("predictor: ../../surrogates/task\nout_dir: runs/s\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = "../project/configs/task/search.yaml"
    cfg = search_cmd.parse(["--config", config])
    assert cfg.predictor == "../project/surrogates/task" and cfg.out_dir == "../project/configs/task/runs/s"
    cfg = search_cmd.parse(["--config", str(folder / "search.yaml")])
    assert cfg.predictor == str(tmp_path / "project" / "surrogates" / "task")
    # The command line after the file wins and stays relative to the current directory; before it, the file wins.
    assert search_cmd.parse(["--config", config, "--out_dir", "mine"]).out_dir == "mine"
    assert search_cmd.parse(["--out_dir=mine", "--config", config]).out_dir == "../project/configs/task/runs/s"
    # Absolute paths, null and objects are the file's as written.
    (folder / "abs.yaml").write_text(f"out_dir: {tmp_path / 'abs'}\npredictor: {{class_path: stub_predictor.TargetPredictor}}\n")
    cfg = search_cmd.parse(["--config", str(folder / "abs.yaml")])
    assert cfg.out_dir == str(tmp_path / "abs") and cfg.predictor == {"class_path": "stub_predictor.TargetPredictor",
                                                                 "init_args": {"avm_per_stage": 1.0}}
    # The rule is one function: only the command's path options move, nothing else of the file.
    assert with_config_paths(["--config", "a/b/c.yaml", "--x", "1"], ("out_dir",)) == ["--config", "a/b/c.yaml", "--x", "1"]
    assert CONFIG_PATHS["search"] == ("predictor", "out_dir")


def test_the_shipped_configs_paths_are_unchanged_from_the_checkout_root(monkeypatch):
    """``make demo`` runs from the checkout root with relative config paths: every path reads as before."""
    monkeypatch.chdir(ROOT)
    cfg = search_cmd.parse(["--config", "configs/digits/search.yaml"])
    assert (cfg.predictor, cfg.out_dir) == ("surrogates/digits", "runs/search_digits")
    cfg = retrain.build_parser().parse_args(["--config", "configs/digits/retrain.yaml"])
    assert (cfg.fit_config, cfg.winners, cfg.out_dir) == ("configs/digits/fit.yaml", "runs/search_digits/winners",
                                                          "runs/retrain_digits")
    cfg = build_dataset.build_parser().parse_args(["--config", "configs/digits/campaign.yaml"])
    assert (cfg.fit_config, cfg.store, cfg.export) == ("configs/digits/fit.yaml", "datasets/digits_surrogate.sqlite", True)
    assert build_dataset.export_path(cfg.store, cfg.export) == "datasets/digits_surrogate.csv"  # the shipped export


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("configs/*/*.yaml")))
def test_every_shipped_config_names_its_inputs_relative_to_itself(config, tmp_path, monkeypatch):
    """From any directory, every shipped config's fit config (and digits' surrogate, store and
    sub-configs) is a file that exists; every path it names lies inside the checkout."""
    command = {"campaign": "build-dataset", "surrogate": "fit-surrogate", "search": "search", "loop": "search-loop",
               "retrain": "retrain", "fit": None}[Path(config).stem]
    if command is None:
        return
    monkeypatch.chdir(tmp_path)
    keys = CONFIG_PATHS[command]
    args = with_config_paths(["--config", str(ROOT / config)], keys)[2:]
    paths = dict(a[2:].split("=", 1) for a in args)
    assert paths, config
    for key, path in paths.items():
        assert Path(path).is_absolute() and Path(path).resolve().is_relative_to(ROOT), (key, path)
    inputs = {k: v for k, v in paths.items() if k in ("fit_config", "campaign", "search", "surrogate")}
    if "digits" in config:
        inputs |= {k: v for k, v in paths.items() if k in ("predictor", "data") or (k == "store" and command == "build-dataset")}
    assert all(Path(p).exists() for p in inputs.values()), inputs


def test_the_shipped_search_runs_from_another_directory_and_writes_only_its_out_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = tree()
    out = tmp_path / "out"
    assert cli_main(["search", "--config", str(ROOT / "configs/digits/search.yaml"), "--search.iterations", "2",
                     "--search.population", "10", "--search.survivors", "8", "--baseline_random", "false",
                     "--out_dir", str(out)]) == 0
    assert_untouched(before, tree())
    assert os.listdir(tmp_path) == ["out"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == 10 + 2 * 2 and (out / "winners" / "winner_1.yaml").is_file()
    assert f"wrote {out}/winners/" in capsys.readouterr().err


def test_a_missing_path_in_a_config_is_named_as_resolved(tmp_path, monkeypatch, capsys):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "search.yaml").write_text("predictor: no_such_surrogate\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["search", "--config", "cfg/search.yaml", "--out_dir", "out"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no surrogate in cfg/no_such_surrogate ") and len(err.splitlines()) == 1


def test_a_campaign_pointed_elsewhere_writes_nothing_into_the_checkout(tmp_path, monkeypatch, capsys):
    """The shipped digits campaign with --store and --campaign_dir in tmp_path: the rows, their export
    (beside the store, printed) and the logs go there; the checkout is left as it was."""
    trained = []
    monkeypatch.setattr(train_mod, "train_architecture",
                        lambda job: trained.append(job.arch_id) or train_mod.base_row(job) | {"metrics": {"acc_1d": 1.0}})
    monkeypatch.chdir(tmp_path)
    before = tree()
    store = tmp_path / "elsewhere" / "rows.sqlite"
    build_dataset.main(["--config", str(ROOT / "configs/digits/campaign.yaml"), "--sampling.n", "3",
                        "--replicates.n", "0", "--workers", "0", "--store", str(store),
                        "--campaign_dir", str(tmp_path / "logs")])
    assert_untouched(before, tree())
    assert len(trained) == 3 and sorted(os.listdir(tmp_path)) == ["elsewhere"]
    csv = tmp_path / "elsewhere" / "rows.csv"
    assert len(csv.read_text().splitlines()) == 1 + 3
    assert f"exported {csv}" in capsys.readouterr().err
    with RowStore(store) as rows:
        assert sorted(r["arch_id"] for r in rows.rows()) == sorted(trained)
    # export false: no file; an export onto the store itself is refused before anything runs.
    csv.unlink()
    build_dataset.main(["--config", str(ROOT / "configs/digits/campaign.yaml"), "--sampling.n", "3",
                        "--replicates.n", "0", "--workers", "0", "--store", str(store), "--export", "false"])
    assert not csv.exists() and len(trained) == 3
    capsys.readouterr()
    assert cli_main(["build-dataset", "--config", str(ROOT / "configs/digits/campaign.yaml"), "--store", str(store),
                     "--export", str(store)]) == 2
    assert capsys.readouterr().err.strip() == f"error: export {store} is the store itself; give another file (.csv or .parquet)"


def test_nothing_is_written_into_an_installed_copy_of_the_shipped_files(tmp_path, monkeypatch, capsys):
    """Run from an installed config, the configs' own output paths point into site-packages: refused
    with one line naming the option to set."""
    installed = tmp_path / "site" / "lightning_nas" / "shipped"
    installed.mkdir(parents=True)
    monkeypatch.setattr(checkout, "INSTALLED", installed)
    out = installed / "runs" / "search_digits"
    assert cli_main(["search", "--config", str(ROOT / "configs/digits/search.yaml"), "--out_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: search out_dir {out} is inside the installed package's shipped files")
    assert "point --out_dir at a folder of yours" in err and not out.exists()
    assert cli_main(["build-dataset", "--config", str(ROOT / "configs/digits/campaign.yaml"),
                     "--store", str(installed / "rows.sqlite")]) == 2
    assert "error: store" in capsys.readouterr().err and not (installed / "rows.sqlite").exists()
    # search-loop's store null is the campaign's: an installed campaign config's store is refused too
    campaign = installed / "configs" / "digits" / "campaign.yaml"
    campaign.parent.mkdir(parents=True)
    for name in ("campaign.yaml", "fit.yaml"):
        (campaign.parent / name).write_text((ROOT / "configs/digits" / name).read_text())
    assert cli_main(["search-loop", "--campaign", str(campaign), "--search", str(ROOT / "configs/digits/search.yaml"),
                     "--surrogate", str(ROOT / "configs/digits/surrogate.yaml"),
                     "--out_dir", str(tmp_path / "loop")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the campaign's store (search-loop store: null)") and "--store" in err


def test_configs_lists_the_shipped_configs(capsys):
    assert cli_main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"# shipped files in {ROOT} (the checkout)")
    assert lines[1:] == [str(p) for p in sorted(ROOT.glob("configs/*/*.yaml"))]
    assert cli_main(["configs", "--root"]) == 0 and capsys.readouterr().out == f"{ROOT}\n"
    assert checkout.shipped_root() == ROOT and CommandParser(command="configs").path_options == ()

import json
from pathlib import Path
import re

import pytest
import torch
import yaml

from conftest import ROOT
from lightning_nas.__main__ import main
from lightning_nas.space import Architecture, Stage

DIGITS = str(ROOT / "configs" / "digits" / "fit.yaml")
TINY = "{out_channel0: 8, kernel0: 3, stages: [{R: 1}, {R: 1, widenfact: 2.0}]}"
QUICK = ["--model.init_args.architecture", TINY, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
         "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2", "--drift.n_reps", "2",
         "--trainer.enable_progress_bar", "false"]


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.slow
def test_fit_writes_config_checkpoint_events_and_drift_metrics_then_test_reloads(run_cli, tmp_path):
    proc = run_cli("fit", "--config", DIGITS, *QUICK, "--trainer.log_every_n_steps", "1")  # step tags too
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "digits" / "version_0"
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))
    ckpts = list((run / "checkpoints").glob("*.ckpt"))
    assert len(ckpts) == 1
    metrics = json.loads((run / "drift_metrics.json").read_text())["metrics"]
    assert {"analog/acc_1d", "analog/acc_1d_std", "analog/avm"} <= set(metrics)
    wrote = {line.split(": ", 2)[1]: line.split(": ", 2)[2] for line in proc.stderr.splitlines()
             if line.startswith("wrote: ")}  # fit ends by saying where its outputs are
    assert wrote == {"run folder (config.yaml, TensorBoard events)": "runs/digits/version_0",
                     "checkpoint": str(Path("runs/digits/version_0/checkpoints") / ckpts[0].name),
                     "drift metrics": "runs/digits/version_0/drift_metrics.json"}
    assert "acc_1d_std" in proc.stdout  # the drift table is printed
    # The table of logged names in docs/getting-started.md is the event file's tags (analog_val/*: off by default).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set(EventAccumulator(str(run)).Reload().Tags()["scalars"]) - {"hp_metric", "epoch"}
    readme = (ROOT / "docs" / "getting-started.md").read_text().split("### What is logged", 1)[1].split("\n#", 1)[0]
    documented = {name for line in readme.splitlines() if line.startswith("| `")
                  for name in re.findall(r"`([\w/]+)`", line.split("|")[1]) if not name.startswith("analog_val")}
    assert documented == tags
    assert all(0 <= metrics[k] <= 100 for k in ("analog/acc_1d", "analog/acc_1s"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["drift"]["n_reps"] == 2 and config["trainer"]["max_epochs"] == 1

    proc = run_cli("test", "--config", DIGITS, *QUICK, "--ckpt_path", str(ckpts[0]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "runs" / "digits" / "version_1" / "drift_metrics.json").read_text())["metrics"]
    assert again.keys() == metrics.keys()


def test_print_config_shows_model_data_and_drift(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", DIGITS, "--print_config"])
    assert exit_.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["class_path"] == "lightning_nas.module.AnalogNASModule"
    assert config["model"]["init_args"]["analog"]["preset"] == "pcm_hwa"
    assert config["data"]["class_path"] == "lightning_nas.data.DigitsDataModule"
    assert config["drift"]["t_inference"] == [1, 3600, 86400, 2592000]


def printed_config(capsys, *args):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *args, "--print_config"])
    assert exit_.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_a_datamodule_switched_on_the_command_line_starts_from_its_own_defaults(capsys):
    """--data.class_path of another class than the config file's: none of the file's data arguments
    carry over (KWS's batch_size 100 under digits); the same class keeps them; arguments after the
    switch apply; a mapping with class_path switches too."""
    kws = str(ROOT / "configs" / "kws" / "fit.yaml")
    data = printed_config(capsys, "--config", kws, "--data.class_path", "DigitsDataModule")["data"]
    assert data["class_path"] == "lightning_nas.data.DigitsDataModule" and data["init_args"]["batch_size"] is None
    data = printed_config(capsys, "--config", kws, "--data.class_path", "KWSDataModule")["data"]
    assert data["init_args"]["batch_size"] == 100 and data["init_args"]["data_dir"] == "data"
    data = printed_config(capsys, "--config", kws, "--data.class_path", "DigitsDataModule",
                          "--data.init_args.batch_size", "8")["data"]
    assert data["init_args"]["batch_size"] == 8
    data = printed_config(capsys, "--config", kws, "--data", "{class_path: lightning_nas.data.DigitsDataModule, "
                          "init_args: {seed: 3}}")["data"]
    assert data["init_args"]["batch_size"] is None and data["init_args"]["seed"] == 3


def test_an_integer_batch_limit_stays_a_count_and_a_fraction_a_fraction(capsys):
    trainer = printed_config(capsys, "--config", DIGITS, "--trainer.limit_val_batches", "1",
                             "--trainer.limit_test_batches", "0.5", "--trainer.limit_train_batches", "1.0")["trainer"]
    assert trainer["limit_val_batches"] == 1 and isinstance(trainer["limit_val_batches"], int)  # one batch
    assert trainer["limit_test_batches"] == 0.5 and isinstance(trainer["limit_train_batches"], float)  # all of it


@pytest.mark.parametrize("args,fragments", [
    (["--model.init_args.architecture", "resnet99"], ["unknown architecture 'resnet99'"]),
    (["--model.init_args.architecture", "{stages: [{R: 20}]}"], ["stages[1].R", "1..16"]),
    (["--model.init_args.analog.preset", "nope"], ["unknown analog preset 'nope'"]),
    (["--drift.n_reps", "0"], ["n_reps must be >= 1"]),
    (["--data.init_args.val_fraction", "1.5"], ["val_fraction"]),
    (["--data.init_args.batchsize", "8"], ["unknown option data.init_args.batchsize; did you mean --data.init_args.batch_size?"]),
    (["--model.init_args.lrr", "0.1"], ["did you mean --model.init_args.lr?"]),
    (["--model.init_args.architecture", TINY, "--trainer.max_epochs", "3", "--model.init_args.digital_warmup_fraction",
      "0", "--model.init_args.digital_warmup_epochs", "3"],
     ["digital_warmup_epochs (3) must be smaller than trainer.max_epochs (3)", "never trains hardware-aware"]),
    (["--model.init_args.digital_warmup_epochs", "2"], ["digital_warmup_epochs or digital_warmup_fraction, not both"]),
    (["--model.init_args.digital_warmup_fraction", "1.0"], ["digital_warmup_fraction must be in [0, 1)"]),
])
def test_bad_input_is_one_clear_line_and_exit_2(cli, args, fragments):
    assert_one_line_error(cli("fit", "--config", DIGITS, *args), *fragments)


@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_a_run_length_the_recipe_cant_train_is_refused_before_any_model_is_built(run_cli, tmp_path, epochs):
    proc = run_cli("fit", "--config", DIGITS, "--trainer.max_epochs", epochs)
    assert_one_line_error(proc, f"digital_warmup_fraction needs a positive trainer.max_epochs (the run's length), "
                                f"got {epochs}")
    assert "parameters" not in proc.stdout + proc.stderr and "Total params" not in proc.stdout  # no model summary
    assert not list(tmp_path.iterdir())  # nothing written (no run folder)


def test_a_mistyped_key_in_a_config_file_names_the_file_line_and_the_nearest_key(run_cli, tmp_path):
    (tmp_path / "bad.yaml").write_text("seed_everything: 1\ntrainer:\n  max_epoch: 3\n")
    proc = run_cli("fit", "--config", DIGITS, "--config", "bad.yaml")
    assert_one_line_error(proc, "'trainer.max_epoch'", "did you mean trainer.max_epochs?", "(bad.yaml line 3)",
                          "(see python -m lightning_nas fit --help)")
    (tmp_path / "s.yaml").write_text("search:\n  populaton: 3\n")
    proc = run_cli("search", "--config", str(ROOT / "configs" / "digits" / "search.yaml"), "--config=s.yaml")
    assert_one_line_error(proc, "did you mean search.population?", "(s.yaml line 2)")
    (tmp_path / "l.yaml").write_text("rounds: 2\ncandidats: 3\n")
    assert_one_line_error(run_cli("search-loop", "--config", "l.yaml"), "did you mean candidates?", "(l.yaml line 2)")


def test_missing_dataset_error_names_the_place_and_the_fix(run_cli, tmp_path):
    proc = run_cli("fit", "--config", str(ROOT / "configs" / "cifar10" / "fit.yaml"),
                   "--data.init_args.data_dir", str(tmp_path / "nowhere"))
    assert_one_line_error(proc, "nowhere", "download")


def test_unknown_subcommand_and_space_command(run_cli):
    proc = run_cli("bogus")
    assert proc.returncode == 2 and "unknown subcommand 'bogus'\n" in proc.stderr  # nothing close: no guess
    proc = run_cli("fitt")
    assert proc.returncode == 2 and "error: unknown subcommand 'fitt'; did you mean fit?" in proc.stderr
    assert "did you mean search-loop?" in run_cli("search_loop").stderr
    proc = run_cli("space", "--sample", "3", "--max_params", "50000", "--seed", "1")
    assert proc.returncode == 0
    assert "distinct architectures: 388286007948448512" in proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines() if re.fullmatch(r"  [0-9a-f]{12} .*", line)]
    assert len(rows) == 3 and all(int(r[1].replace(",", "")) <= 50000 for r in rows)


def test_architecture_file_from_a_search_is_accepted(run_cli, tmp_path):
    arch = Architecture(8, 3, (Stage(1), Stage(1, widenfact=2.0)))
    path = tmp_path / "winner.yaml"
    path.write_text(yaml.safe_dump({"architecture": arch.to_dict()}))
    args = [a if a != TINY else str(path) for a in QUICK] + ["--test_after_fit", "false"]
    proc = run_cli("fit", "--config", DIGITS, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = yaml.safe_load(next((tmp_path / "runs").rglob("config.yaml")).read_text())
    assert saved["model"]["init_args"]["architecture"] == arch.to_dict()  # the architecture, not the file's path
    ckpt = next((tmp_path / "runs").rglob("*.ckpt"))
    hparams = torch.load(ckpt, weights_only=False)["hyper_parameters"]
    assert Architecture.from_dict(hparams["architecture"]) == arch
    assert not list((tmp_path / "runs").rglob("drift_metrics.json"))  # test_after_fit=false


def test_class_choices_on_the_command_line_are_rewritten_only_where_they_choose_a_class():
    """parsing.with_class_choices, the one rewrite of a class choice for every parser: a reset before
    a different class, init_args after the class they belong to (but not past a later config file,
    which wins as written), nothing for a file that merges into the class or for the same class."""
    from lightning_nas.parsing import with_class_choices as choices

    kws = "configs/kws/fit.yaml"
    assert choices(["fit", "-c", kws, "--data", "DigitsDataModule"]) == ["fit", "-c", kws, "--data=null", "--data",
                                                                         "DigitsDataModule"]
    assert choices(["fit", "--config", kws, "--data", "extra.yaml"]) == ["fit", "--config", kws, "--data", "extra.yaml"]
    assert choices(["fit", "--config", kws, "--data.class_path", "KWSDataModule"]) == [
        "fit", "--config", kws, "--data.class_path", "KWSDataModule"]
    moved = choices(["fit", "--data.init_args.batch_size=8", "--trainer.max_epochs", "-1", "--data.class_path", "X",
                     "--data.init_args.seed", "3"])
    assert moved == ["fit", "--trainer.max_epochs", "-1", "--data.class_path", "X", "--data.init_args.batch_size=8",
                     "--data.init_args.seed", "3"]
    before_a_file = ["fit", "--data.init_args.batch_size", "8", "--config", kws, "--data", "lightning_nas.data.KWSDataModule"]
    assert choices(before_a_file) == before_a_file
    assert choices(["--s", "tpe", "--s.help", "tpe", "--s={class_path: tpe, init_args: {history: 3}}"],
                   {"s": lambda name: {"tpe": "pkg.TPE"}.get(name, name)}) == [
        "--s", "pkg.TPE", "--s.help", "pkg.TPE", "--s={class_path: pkg.TPE, init_args: {history: 3}}"]

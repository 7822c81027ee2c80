"""A training run as data: a fit config resolved into the complete config that ``fit`` runs.

``python -m lightning_nas fit --config FIT_CONFIG [OPTIONS]``, every campaign row and every
``retrain`` run train from the same kind of object: the *resolved* config, a plain mapping with
every default filled in (what ``fit --print_config`` shows). :func:`resolve` makes it from a fit
config file and fit options, :func:`with_options` sets dotted options on it (a campaign's budget,
an architecture, a seed), and :func:`lightning_nas.training.train_config` trains it. So a campaign
row and ``fit`` of the same architecture are the same training by construction: ``fit --config``
with a job's config (``Job.config``) trains that row again.

:func:`canonical` is what a config trains, without what only changes where it logs or what it
prints: the part of a campaign store's identity that says "these rows were trained alike".
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from lightning_nas.errors import UserError

NOT_TRAINING = frozenset({
    "logger", "callbacks", "enable_progress_bar", "enable_model_summary", "enable_checkpointing",
    "log_every_n_steps", "default_root_dir", "accelerator", "devices", "num_nodes", "strategy",
    "num_sanity_val_steps", "profiler", "enable_autolog_hparams", "model_registry", "barebones",
})
"""Trainer options that change where a run logs, what it prints or where it runs, not its results
(sanity validation draws no training data; rows of CPU and GPU workers are kept apart by threads
and the recorded device, not by the identity)."""

DRIFT_NOT_MEASURING = frozenset({"verbose", "save_json"})
"""Drift-callback options that change what is printed or written, not what is measured."""

MODEL_PER_ROW = frozenset({"architecture", "analog", "input_shape", "num_classes"})
MODEL_NOT_TRAINING = frozenset({"compile"})
"""Model arguments that change how the network runs, not what it trains (like the analog
implementation, which a campaign identity leaves out of the hardware it records)."""
"""Model arguments that a campaign sets per row (the architecture, its drawn hardware) or that the
datamodule links: recorded in each row and in the identity's own fields, not in ``training``."""


def _resolver():
    from lightning_nas.cli import AnalogNASCLI

    class Resolver(AnalogNASCLI):
        """The fit CLI's parser, parsing only: no seed set, nothing instantiated (an architecture
        file is read into the config, as ``fit`` does before it builds the model)."""

        def init_parser(self, **kwargs: Any) -> Any:
            from lightning_nas.parsing import PROG

            kwargs["prog"] = f"{PROG} fit"  # its errors point at the help that lists fit's options
            return super().init_parser(**kwargs)

        def _set_seed(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

        def after_instantiate_classes(self) -> None:
            pass

    return Resolver


def _parse(args: Any) -> dict[str, Any]:
    import warnings

    import yaml

    with warnings.catch_warnings():  # LightningCLI warns that this process has its own command line
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        warnings.filterwarnings("ignore", message=".*skip_none")
        cli: Any = _resolver()(args=args, run=False)
        return yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))


def resolve(fit_config: Optional[str | Path], fit_args: Sequence[str] = ()) -> dict[str, Any]:
    """The complete config of ``fit --config FIT_CONFIG FIT_ARGS`` (``fit_config`` None: fit's
    defaults), every default filled in. A bad option or value is one :class:`UserError` line."""
    args: list[str] = []
    if fit_config is not None:
        if not Path(fit_config).is_file():
            raise UserError(f"fit config {fit_config} does not exist; give the task's fit config "
                            "(e.g. configs/digits/fit.yaml)")
        args = ["--config", str(fit_config)]
    return _parse([*args, *map(str, fit_args)])


def check(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` parsed again by fit's parser (types, values, unknown keys): its resolved form."""
    return _parse(dict(config))


def with_options(config: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with dotted ``options`` set (``{"trainer.max_epochs": 3}``); a key
    that is not an option of ``config`` is refused, a mapping value (``model.init_args.analog``,
    ``trainer.logger``) replaces the whole entry."""
    out = copy.deepcopy(dict(config))
    for key, value in options.items():
        *parents, leaf = key.split(".")
        node: Any = out
        for i, part in enumerate(parents):
            if not isinstance(node, dict) or not isinstance(node.get(part), dict):
                raise UserError(f"{key} is not an option of the fit config ({'.'.join(parents[:i + 1])} is "
                                "not a section); see python -m lightning_nas fit --print_config")
            node = node[part]
        if leaf not in node:
            import difflib

            close = difflib.get_close_matches(leaf, list(node), n=1)
            hint = f"; did you mean {'.'.join([*parents, close[0]])}?" if close else ""
            raise UserError(f"{key} is not an option of the fit config{hint}")
        node[leaf] = copy.deepcopy(value)
    return out


@functools.lru_cache(maxsize=1)
def _defaults_text() -> str:
    return json.dumps(_parse([]))


def defaults() -> dict[str, Any]:
    """fit's config with nothing given: every option at its default."""
    return json.loads(_defaults_text())


def _plain(value: Any) -> Any:
    """``value`` with whole numbers as ints and others as floats (1 and 1.0 are the same setting; a
    YAML file may write either), booleans kept as they are."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in sorted(value.items())}
    return value


def _changed(values: Mapping[str, Any], default: Mapping[str, Any], skip: frozenset = frozenset()) -> dict:
    """The entries of ``values`` that differ from ``default`` (all of them for an empty ``default``;
    numbers as :func:`_plain`), ``skip`` left out."""
    text = lambda v: json.dumps(_plain(v), sort_keys=True)  # noqa: E731 - True is not 1.0 here
    return {k: _plain(v) for k, v in sorted(values.items())
            if k not in skip and (k not in default or text(v) != text(default[k]))}


def warmup_epochs(init: Mapping[str, Any], max_epochs: Optional[int]) -> int:
    """The digital warm-up epochs a model's arguments give for a run of ``max_epochs`` (the
    module's rule: :attr:`lightning_nas.module.AnalogNASModule.warmup_epochs`)."""
    from lightning_nas.module import AnalogNASModule

    return AnalogNASModule.warmup_for(init.get("digital_warmup_epochs", 0),
                                      init.get("digital_warmup_fraction", 0.0), max_epochs)


def canonical(config: Mapping[str, Any]) -> dict[str, Any]:
    """What ``config`` trains: ``seed_everything``, every model and drift-evaluation setting (this
    project's own: a changed default is a changed identity), and the trainer options that differ
    from Lightning's defaults (so a Lightning release that adds an option does not orphan a store);
    without what only changes logging, output or how it runs (:data:`NOT_TRAINING`,
    :data:`DRIFT_NOT_MEASURING`, :data:`MODEL_NOT_TRAINING`),
    the per-row model arguments (:data:`MODEL_PER_ROW`) and the data (a campaign identity records
    the task's arguments itself). The digital warm-up is stated in epochs (a fraction of 0.2 over 15
    epochs and 3 epochs are the same training)."""
    init = dict(config["model"]["init_args"])
    init["digital_warmup_epochs"] = warmup_epochs(init, config["trainer"].get("max_epochs"))
    init["digital_warmup_fraction"] = 0.0
    return {
        "seed_everything": config.get("seed_everything"),
        "model": {"class_path": config["model"]["class_path"],
                  **_changed(init, {}, MODEL_PER_ROW | MODEL_NOT_TRAINING)},
        "trainer": _changed(config["trainer"], defaults()["trainer"], NOT_TRAINING),
        "drift": _changed(config["drift"], {}, DRIFT_NOT_MEASURING),
    }

"""Objects named by dotted paths: :func:`resolve` (a function or class), :func:`instantiate_typed`
(``{"class_path": "pkg.module.Name", "init_args": {...}}`` of a class typed by a base class or a
protocol: a search strategy, a predictor, a datamodule), built with jsonargparse's subclass
mechanism as the command line builds them."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from lightning_nas.errors import UserError


def resolve(path: str) -> Any:
    """The object named by a dotted path ``pkg.module.Name``."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise UserError(f"{path!r} can't be imported ({err}); give a dotted path "
                        "pkg.module.Name") from None


CLASS_KEYS = ("class_path", "init_args", "dict_kwargs")
"""The keys of a mapping that gives a class (jsonargparse's)."""


def checked_mapping(spec: Any, key: str, class_required: bool = False) -> Any:
    """``spec`` as jsonargparse should read it when it is a mapping for option ``key``: an empty
    ``init_args`` (YAML's ``init_args:`` with every argument commented out) is none; a mapping with
    a ``class_path`` that is not a string, or with other keys than :data:`CLASS_KEYS`, is one error
    line (jsonargparse's own says "Option 'class_path' is not accepted"). A mapping without
    ``class_path`` overrides the arguments of the class chosen before (a later config file's
    ``init_args``), so it is an error only if ``class_required``. Anything else is returned as it is."""
    if not isinstance(spec, dict):
        return spec
    if "class_path" in spec:
        unknown = [str(k) for k in spec if k not in CLASS_KEYS]
        if unknown:
            raise UserError(f"{key}: unknown key(s) {', '.join(unknown)}; a class is given as {{class_path, init_args}}")
    if ("class_path" in spec or class_required) and not isinstance(spec.get("class_path"), str):
        raise UserError(f"{key}: a mapping needs class_path, a class name or dotted path (and init_args), "
                        f"got {spec.get('class_path')!r}")
    return {k: v for k, v in spec.items() if not (k == "init_args" and v is None)}


def instantiate_typed(base: Any, spec: Any, key: str) -> Any:
    """The object ``spec`` describes (``{class_path, init_args}``, or a class name or path), built by
    jsonargparse's subclass mechanism as the command line builds it: ``base`` is a class (``spec``
    names a subclass of it) or a protocol (a class that implements it); ``init_args`` are checked
    against the class's signature and types and its defaults filled in. Every error is one
    :class:`UserError` line naming ``key`` (a dotted option such as ``search.strategy``), a
    ``ValueError`` or ``TypeError`` of the constructor included."""
    from jsonargparse import ArgumentParser

    from lightning_nas.parsing import one_line

    spec = checked_mapping(spec, key, class_required=True)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument(f"--{key}", type=base, required=True)
    value: Any = spec
    for part in reversed(key.split(".")):
        value = {part: value}
    try:
        cfg = parser.parse_object(value)
    except argparse.ArgumentError as err:
        raise UserError(one_line(str(err))) from None
    class_path = cfg[key].class_path
    try:
        return parser.instantiate(cfg)[key]
    except (TypeError, ValueError) as err:
        raise UserError(f"{key} {class_path.rsplit('.', 1)[-1]}: {err}") from None

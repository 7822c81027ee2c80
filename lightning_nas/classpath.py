"""Build objects from ``{"class_path": "pkg.module.Name", "init_args": {...}}`` mappings."""

from __future__ import annotations

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


def instantiate(spec: dict[str, Any]) -> Any:
    if "class_path" not in spec:
        raise UserError(f"expected a mapping with class_path (and init_args), got keys {sorted(spec)}")
    import inspect

    cls = resolve(spec["class_path"])
    args = spec.get("init_args") or {}
    if not isinstance(args, dict):
        raise UserError(f"init_args of {spec['class_path']} must be a mapping, got {args!r}")
    try:
        inspect.signature(cls).bind(**args)
    except TypeError as exc:  # an unknown or missing argument: the user's, not a bug in the class
        raise UserError(f"{spec['class_path']}: {exc}") from None
    except ValueError:  # no signature to check (a builtin): let the call tell
        pass
    check_simple_types(cls, args, spec["class_path"])
    return cls(**args)


def check_simple_types(cls: Any, args: dict[str, Any], where: str) -> None:
    """Arguments annotated ``int``, ``float``, ``bool`` or ``str`` (optionally ``Optional``) must be
    of that type: a typo on the command line is one clear error, not a failure deep inside."""
    import typing

    try:
        hints = typing.get_type_hints(cls.__init__ if isinstance(cls, type) else cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check
        return
    for name, value in args.items():
        hint = hints.get(name)
        options = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
        simple = [t for t in options if t in (int, float, bool, str)]
        if not simple or len(simple) + (type(None) in options) != len(options):
            continue
        if value is None and type(None) in options:
            continue
        ok = any(isinstance(value, bool) if t is bool else
                 (isinstance(value, (int, float)) and not isinstance(value, bool)) if t is float else
                 (isinstance(value, int) and not isinstance(value, bool)) if t is int else isinstance(value, t)
                 for t in simple)
        if not ok:
            expected = " or ".join(t.__name__ for t in simple)
            raise UserError(f"{where}: invalid value {value!r} for {name} (expected {expected})")

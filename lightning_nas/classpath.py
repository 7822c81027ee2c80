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
        raise UserError(f"{path!r} can't be imported ({err}); give a dotted path such as "
                        "lightning_nas.data.DigitsDataModule") from None


def instantiate(spec: dict[str, Any]) -> Any:
    if "class_path" not in spec:
        raise UserError(f"expected a mapping with class_path (and init_args), got keys {sorted(spec)}")
    return resolve(spec["class_path"])(**spec.get("init_args", {}))

"""LightningDataModules for the NAS tasks, one module each.

Every :class:`TaskDataModule` subclass defined in a module of this package is a task, named by its
``task`` attribute: adding a task means adding one module here (plus its configs). The classes are
also reachable as ``lightning_nas.data.<ClassName>`` (the ``class_path`` the configs use).
"""

from __future__ import annotations

import importlib
import pkgutil

from lightning_nas.data.base import TaskDataModule


def datamodules() -> dict[str, type[TaskDataModule]]:
    """Task name -> datamodule class, for every task module of this package."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    found: dict[str, type[TaskDataModule]] = {}
    pending = list(TaskDataModule.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending += cls.__subclasses__()
        if cls.__module__.startswith(f"{__name__}.") and cls.task:
            found[cls.task] = cls
    return found


def task_name(datamodule_class: type) -> str:
    """The task a datamodule class stands for (its ``task``, else its dotted path)."""
    return getattr(datamodule_class, "task", "") or f"{datamodule_class.__module__}.{datamodule_class.__qualname__}"


def __getattr__(name: str) -> type[TaskDataModule]:
    for cls in datamodules().values():
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TaskDataModule", "datamodules", "task_name"]

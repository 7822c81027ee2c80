"""What a task is, as the campaign store, the surrogate and the search record it.

A :class:`TaskInfo` names the task (``digits``, ``cifar10``, ``kws``, ``vww``), its datamodule
class, input shape, number of classes and (when known) the sizes of its splits. It travels from
the datamodule to the campaign store, from there into the surrogate's metadata and the search's
winner files, so a surrogate of one task can't silently drive a search or a retrain of another.
Importing this module imports neither torch nor Lightning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from lightning_nas.errors import UserError


@dataclass(frozen=True)
class TaskInfo:
    name: str
    """Short task name (a datamodule's ``task``)."""
    datamodule: str = ""
    """Class path of the datamodule."""
    input_shape: tuple[int, int, int] = (0, 0, 0)
    num_classes: int = 0
    splits: Optional[dict[str, int]] = field(default=None, compare=False)
    """Number of samples per split (train, val, test), when the data was loaded."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> "TaskInfo":
        try:
            return cls(name=str(data["name"]), datamodule=str(data.get("datamodule", "")),
                       input_shape=tuple(int(v) for v in data["input_shape"]),  # type: ignore[arg-type]
                       num_classes=int(data["num_classes"]), splits=data.get("splits"))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where or 'task'}: not a task record (name, input_shape, num_classes): {data!r}") from None

    def describe(self) -> str:
        shape = "x".join(str(v) for v in self.input_shape)
        return f"{self.name} ({shape} input, {self.num_classes} classes)"

    def check_matches(self, other: "TaskInfo", mine: str, theirs: str, fix: str, name_only: bool = False) -> None:
        """Raise one :class:`UserError` naming both tasks when they differ (name, shape or classes; only
        the name with ``name_only``)."""
        if self.name != other.name or not name_only and (tuple(self.input_shape), self.num_classes) != (
                tuple(other.input_shape), other.num_classes):
            raise UserError(f"{mine} is for task {self.describe()}, {theirs} is for task {other.describe()}; {fix}")


def task_of(name: str) -> TaskInfo:
    """The task named ``name`` (``digits``, ``cifar10``, ...) or given by a datamodule class path, with
    its datamodule's default input shape and classes. Imports the datamodules (torch)."""
    from lightning_nas.data import datamodules

    tasks = datamodules()
    cls = tasks.get(name)
    if cls is None:
        cls = next((c for c in tasks.values() if name in (f"{c.__module__}.{c.__qualname__}",
                                                           f"lightning_nas.data.{c.__qualname__}")), None)
    if cls is None:
        raise UserError(f"unknown task {name!r}; use one of {', '.join(sorted(tasks))} or a datamodule class path")
    return cls().task_info()  # the default arguments: no data is read

"""Common base class and split helpers for the task data modules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_nas.errors import DatasetNotFoundError, UserError


def check_fraction(name: str, value: float, *, allow_zero: bool = False, allow_one: bool = False,
                   maximum: float = 1.0, meaning: str = "") -> float:
    """Return ``value`` as float or raise :class:`UserError` naming the argument and allowed range
    (``0 .. maximum``; the ends included as ``allow_zero`` / ``allow_one`` say)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    lo_ok = number and (value >= 0 if allow_zero else value > 0)
    hi_ok = number and (value <= maximum if allow_one else value < maximum)
    if not (lo_ok and hi_ok):
        lo, hi = ("[0" if allow_zero else "(0"), (f"{maximum:g}]" if allow_one else f"{maximum:g})")
        raise UserError(f"{name} must be in {lo}, {hi}{meaning}, got {value!r}")
    return float(value)


def ensure_dataset(name: str, where: Path, missing: Callable[[], list[str]], download: bool,
                   fetch: Callable[[], None], url: str, by_hand: str,
                   found_in_data_dir: Callable[[], bool] = lambda: False) -> None:
    """Make sure a dataset is on disk: nothing to do when ``missing()`` is empty, else ``fetch()`` it
    if ``download`` is set; every way of failing is one :class:`UserError` that says what to do.
    ``found_in_data_dir()``: the files are in ``data_dir`` itself (``where``'s parent), i.e. data_dir
    names the dataset's folder instead of the folder that holds it; the error then says so."""
    if not missing():
        return
    if found_in_data_dir():
        raise DatasetNotFoundError(f"{name} not found in {where}, but its files are in {where.parent}: data_dir is the "
                                   f"folder that holds {where.name}/, not that folder itself; set "
                                   f"--data.init_args.data_dir {where.parent.parent}")
    if not download:
        raise DatasetNotFoundError(f"{name} not found in {where} (missing {', '.join(missing())}); "
                                   f"set data.download=true or {by_hand}")
    try:
        fetch()
    except (OSError, RuntimeError) as e:
        raise UserError(f"downloading {name} from {url} failed ({e}); extract it by hand into {where}") from e
    if missing():
        raise DatasetNotFoundError(f"{name} download did not produce {', '.join(missing())} in {where}")


def check_split(val_fraction: float, test_fraction: float) -> tuple[float, float]:
    """Validate the validation and test fractions of one split (each in (0, 1), sum < 1)."""
    val = check_fraction("val_fraction", val_fraction)
    test = check_fraction("test_fraction", test_fraction)
    if val + test >= 1:
        raise UserError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    return val, test


def check_count(name: str, value: int, minimum: int) -> int:
    """Return ``value`` or raise :class:`UserError` if it is not an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def stratified_split(labels: np.ndarray, n_carve: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(len(labels))`` into ``(rest, carved)`` with ``len(carved) == n_carve``.

    Each class contributes to ``carved`` in proportion to its size (largest-remainder rounding).
    Both index arrays are sorted.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (n_carve / len(labels))
    take = np.floor(quota).astype(int)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_carve - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    carved = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    carved_idx = np.sort(np.concatenate(carved)) if carved else np.empty(0, dtype=int)
    rest_idx = np.setdiff1d(np.arange(len(labels)), carved_idx)
    return rest_idx, carved_idx


def carve_count(name: str, fraction: float, n: int) -> int:
    """Number of samples a ``fraction`` of ``n`` gives; :class:`UserError` if a split would be empty."""
    k = int(round(fraction * n))
    if k < 1 or k >= n:
        raise UserError(f"{name}={fraction} gives {k} of {n} samples; choose it so both splits are non-empty")
    return k


def loader_workers() -> int:
    """Data-loader worker processes for tasks decoded from files: one per core but one (for the
    training process), at most 4; 0 on a single core."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores - 1))


if TYPE_CHECKING:
    from lightning_nas.task import TaskInfo


def without_augmentation(data: Dataset, transform: Optional[Callable]) -> Dataset:
    """``data`` (through any ``Subset`` layers) with its dataset's ``transform`` replaced by ``transform``
    (``None``: ``data`` as it is). The original datasets are not changed."""
    if transform is None:
        return data
    if isinstance(data, Subset):
        return Subset(without_augmentation(data.dataset, transform), data.indices)
    if not hasattr(data, "transform"):
        raise TypeError(f"{type(data).__name__} has no transform to replace")
    plain = copy.copy(data)
    plain.transform = transform
    return plain


class TaskDataModule(lightning.LightningDataModule):
    """Base for all task data modules.

    ``input_shape`` (C, H, W) and ``num_classes`` are known right after ``__init__``.
    Subclasses implement :meth:`_load_splits` returning ``(train, val, test)`` datasets;
    :meth:`setup` calls it once and then keeps a seeded ``train_fraction`` subset of train.
    """

    task: str = ""
    """The task's name (``digits``, ``cifar10``, ...): set by every concrete datamodule."""
    task_defaults: ClassVar[dict[str, Any]] = {"batch_size": 64}
    """Each task's own defaults for the arguments that differ between tasks. Those arguments
    default to ``None`` = "this task's default", so values never leak from one datamodule
    class to another (jsonargparse keeps same-named init_args when ``class_path`` changes)."""
    _input_shape: tuple[int, int, int]
    _num_classes: int
    eval_transform: Optional[Callable] = None
    """Set by tasks whose training split is augmented: the transform of their evaluation splits, which
    :meth:`calibration_dataloader` applies to the training images instead."""

    def __init__(self, batch_size: Optional[int] = None, num_workers: Optional[int] = None, seed: int = 0,
                 train_fraction: float = 1.0):
        super().__init__()
        batch_size = self.task_default("batch_size", batch_size)
        self.batch_size = check_count("batch_size", batch_size, 1)
        self.num_workers = check_count("num_workers", self.task_default("num_workers", num_workers), 0)
        self.seed = int(seed)
        self.train_fraction = check_fraction("train_fraction", train_fraction, allow_one=True)
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None
        self.test_set: Optional[Dataset] = None

    @classmethod
    def task_default(cls, name: str, value: Any) -> Any:
        """``value``, or this task's default for ``name`` when ``value`` is ``None`` (``num_workers``:
        0 for tasks held in memory, else :func:`loader_workers`)."""
        if value is not None:
            return value
        if name == "num_workers":
            return loader_workers() if cls.task_defaults.get("num_workers") == "auto" else 0
        return cls.task_defaults[name]

    def task_info(self) -> "TaskInfo":
        """This task as the store, the surrogate and the search record it (split sizes once set up)."""
        from lightning_nas.task import TaskInfo

        splits = None
        if self.train_set is not None:
            splits = {name: len(data) for name, data in
                      (("train", self.train_set), ("val", self.val_set), ("test", self.test_set)) if data is not None}
        cls = type(self)
        return TaskInfo(name=self.task or cls.__name__, datamodule=f"{cls.__module__}.{cls.__qualname__}",
                        input_shape=tuple(self.input_shape), num_classes=self.num_classes, splits=splits)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._input_shape

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def _load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: Optional[str] = None) -> None:
        """Build all splits once (later calls are no-ops)."""
        if self.train_set is not None:
            return
        train, val, test = self._load_splits()
        if self.train_fraction < 1.0:
            n = len(train)
            k = max(1, int(round(self.train_fraction * n)))
            rng = np.random.default_rng([self.seed, 1])
            train = Subset(train, np.sort(rng.permutation(n)[:k]).tolist())
        self.train_set, self.val_set, self.test_set = train, val, test

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()  # no-op when the Trainer already called it
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            getattr(self, f"{split}_set"),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def calibration_dataloader(self) -> DataLoader:
        """The training split as the deployed chip sees inputs: without augmentation (the evaluation
        transform), in dataset order. The data of BatchNorm recalibration (``drift.bn_recalibration``),
        which draws its seeded sample from it."""
        self.setup()
        return DataLoader(without_augmentation(self.train_set, self.eval_transform), batch_size=self.batch_size,
                          shuffle=False, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

"""scikit-learn's bundled 8x8 handwritten digits: the default, fully offline task."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lightning_nas.data.base import TaskDataModule, carve_count, check_split, stratified_split


class DigitsDataModule(TaskDataModule):
    """``sklearn.datasets.load_digits`` (1797 images, 1x8x8, 10 classes).

    Seeded stratified train/val/test split (default 70/15/15). Pixels are scaled by 1/16
    and then standardised with the mean/std of the train split.
    """

    task = "digits"
    _input_shape = (1, 8, 8)
    _num_classes = 10
    task_defaults = {"batch_size": 64, "val_fraction": 0.15, "test_fraction": 0.15}

    def __init__(
        self,
        batch_size: Optional[int] = None,
        num_workers: Optional[int] = None,
        seed: int = 0,
        train_fraction: float = 1.0,
        val_fraction: Optional[float] = None,
        test_fraction: Optional[float] = None,
    ):
        batch_size = self.task_default("batch_size", batch_size)
        val_fraction = self.task_default("val_fraction", val_fraction)
        test_fraction = self.task_default("test_fraction", test_fraction)
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, train_fraction=train_fraction)
        self.val_fraction, self.test_fraction = check_split(val_fraction, test_fraction)
        self.split_indices: dict[str, np.ndarray] = {}
        self.save_hyperparameters()

    def _load_splits(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.images.astype(np.float32) / 16.0
        y = digits.target.astype(np.int64)
        n = len(y)
        rest, test = stratified_split(y, carve_count("test_fraction", self.test_fraction, n), self.seed)
        n_val = carve_count("val_fraction", self.val_fraction, n)
        train_pos, val_pos = stratified_split(y[rest], n_val, self.seed + 1)
        train, val = rest[train_pos], rest[val_pos]
        self.split_indices = {"train": train, "val": val, "test": test}

        mean, std = x[train].mean(), x[train].std()
        x = torch.from_numpy((x - mean) / std).unsqueeze(1)
        y = torch.from_numpy(y)
        return tuple(TensorDataset(x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in (train, val, test))

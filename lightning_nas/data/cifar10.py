"""CIFAR-10 read directly from the official python-pickle batches."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision import transforms
from torchvision.datasets.utils import download_and_extract_archive

from lightning_nas.data.base import TaskDataModule, carve_count, check_fraction, ensure_dataset, stratified_split

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def read_batches(folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Read pickled batches into ``(uint8 images N x 3 x 32 x 32, int64 labels N)``."""
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[b"labels"])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


class ImageTensorDataset(Dataset):
    """uint8 CHW images -> float in [0, 1] -> ``transform``; yields ``(image, label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i].float().div_(255)), self.labels[i]


class CIFAR10DataModule(TaskDataModule):
    """CIFAR-10 (3x32x32, 10 classes) from ``data_dir/cifar-10-batches-py``.

    A seeded stratified ``val_fraction`` of the 50k training images is held out (no augmentation);
    the official 10k test batch is the test split. ``augment`` adds random crop + flip to train.
    """

    task = "cifar10"
    _input_shape = (3, 32, 32)
    _num_classes = 10
    task_defaults = {"num_workers": "auto", "batch_size": 128, "val_fraction": 0.1, "data_dir": "data"}

    def __init__(
        self,
        data_dir: Optional[str] = None,
        download: bool = False,
        batch_size: Optional[int] = None,
        num_workers: Optional[int] = None,
        seed: int = 0,
        train_fraction: float = 1.0,
        val_fraction: Optional[float] = None,
        augment: bool = True,
    ):
        batch_size = self.task_default("batch_size", batch_size)
        data_dir = self.task_default("data_dir", data_dir)
        val_fraction = self.task_default("val_fraction", val_fraction)
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, train_fraction=train_fraction)
        self.data_dir = str(data_dir)
        self.download = bool(download)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.augment = bool(augment)
        self.save_hyperparameters()

    @property
    def folder(self) -> Path:
        return Path(self.data_dir) / FOLDER

    def _missing(self) -> list[str]:
        return [n for n in TRAIN_FILES + (TEST_FILE,) if not (self.folder / n).is_file()]

    def prepare_data(self) -> None:
        """Download and extract the official archive if files are missing and ``download`` is set."""
        ensure_dataset("CIFAR-10", self.folder, self._missing, self.download,
                       lambda: download_and_extract_archive(URL, download_root=self.data_dir, md5=MD5), URL,
                       f"put the python-pickle batches from {URL} there",
                       lambda: all((Path(self.data_dir) / n).is_file() for n in TRAIN_FILES + (TEST_FILE,)))

    def _load_splits(self):
        self.prepare_data()
        images, labels = read_batches(self.folder, TRAIN_FILES)
        test_images, test_labels = read_batches(self.folder, (TEST_FILE,))
        n_val = carve_count("val_fraction", self.val_fraction, len(labels))
        train_idx, val_idx = stratified_split(labels.numpy(), n_val, self.seed)

        normalize = transforms.Normalize(MEAN, STD)
        plain = normalize
        train_tf = (
            transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), normalize])
            if self.augment
            else plain
        )
        self.eval_transform = plain if self.augment else None
        train = Subset(ImageTensorDataset(images, labels, train_tf), train_idx.tolist())
        val = Subset(ImageTensorDataset(images, labels, plain), val_idx.tolist())
        test = ImageTensorDataset(test_images, test_labels, plain)
        return train, val, test

"""Visual Wake Words (person / no person) from an image-folder layout."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from lightning_nas.data.base import TaskDataModule, carve_count, check_count, check_split, stratified_split
from lightning_nas.errors import DatasetNotFoundError, UserError

CLASSES = ("non_person", "person")  # label = index
EXTENSIONS = {".jpg", ".jpeg", ".png"}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
LAYOUT_HINT = (
    "expected <data_dir>/person/ and <data_dir>/non_person/ image folders (or train/, val/, test/ "
    "subfolders each holding those two); VWW has no direct download: extract MLPerf Tiny's "
    "vw_coco2014_96.tar.gz there or build it from COCO 2014 with the visualwakewords (pyvww) tooling"
)


def has_layout(folder: Path) -> bool:
    """Whether ``folder`` is laid out as VWW's ``data_dir``: class folders, or train/ with them."""
    return all((folder / name).is_dir() for name in CLASSES) or all(
        (folder / "train" / name).is_dir() for name in CLASSES)


def closest_layout(root: Path) -> Optional[Path]:
    """The folder the user probably meant when ``root`` is not laid out as VWW: its parent (``root``
    is a class or split folder) or its one subfolder that is (``root`` holds the dataset's folder)."""
    if root.name in (*CLASSES, "train", "val", "test") and has_layout(root.parent):
        return root.parent
    inside = [c for c in sorted(root.iterdir()) if c.is_dir() and has_layout(c)]
    return inside[0] if len(inside) == 1 else None


def scan(folder: Path) -> list[tuple[str, int]]:
    """``[(image path, label), ...]`` for ``folder/non_person`` and ``folder/person``, sorted."""
    items = []
    for label, name in enumerate(CLASSES):
        sub = folder / name
        if not sub.is_dir():
            raise DatasetNotFoundError(f"Visual Wake Words: {sub} is missing; {LAYOUT_HINT}")
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise DatasetNotFoundError(f"Visual Wake Words: no .jpg/.png images in {sub}; {LAYOUT_HINT}")
        items += [(str(p), label) for p in files]
    return items


class ImageFileDataset(Dataset):
    """Loads ``(path, label)`` items as RGB PIL images and applies ``transform``."""

    def __init__(self, items: list[tuple[str, int]], transform):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        with Image.open(path) as img:
            return self.transform(img.convert("RGB")), label


class VWWDataModule(TaskDataModule):
    """Visual Wake Words (3 x resolution x resolution, 2 classes: non_person=0, person=1).

    Uses ``data_dir/{train,val,test}/`` where present; any split without its own folder is
    carved (seeded, stratified) from train using ``val_fraction`` / ``test_fraction``.
    """

    task = "vww"
    _num_classes = 2
    task_defaults = {"num_workers": "auto", "batch_size": 64, "val_fraction": 0.1, "test_fraction": 0.1, "data_dir": "data/vww"}

    def __init__(
        self,
        data_dir: Optional[str] = None,
        batch_size: Optional[int] = None,
        num_workers: Optional[int] = None,
        seed: int = 0,
        train_fraction: float = 1.0,
        val_fraction: Optional[float] = None,
        test_fraction: Optional[float] = None,
        resolution: int = 96,
        augment: bool = True,
    ):
        batch_size = self.task_default("batch_size", batch_size)
        data_dir = self.task_default("data_dir", data_dir)
        val_fraction = self.task_default("val_fraction", val_fraction)
        test_fraction = self.task_default("test_fraction", test_fraction)
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, train_fraction=train_fraction)
        self.data_dir = str(data_dir)
        self.val_fraction, self.test_fraction = check_split(val_fraction, test_fraction)
        self.resolution = check_count("resolution", resolution, 8)
        self.augment = bool(augment)
        self._input_shape = (3, self.resolution, self.resolution)
        self.files: dict[str, list[tuple[str, int]]] = {}
        self.save_hyperparameters()

    def _split_files(self) -> dict[str, list[tuple[str, int]]]:
        root = Path(self.data_dir)
        if not root.is_dir():
            raise DatasetNotFoundError(f"Visual Wake Words not found at {root}; {LAYOUT_HINT}")
        presplit = (root / "train").is_dir()
        if not has_layout(root):
            nearby = closest_layout(root)
            if nearby is not None:
                raise DatasetNotFoundError(f"Visual Wake Words not found at {root}, but {nearby} has its layout; set "
                                           f"--data.init_args.data_dir {nearby}")
        files = {"train": scan(root / "train" if presplit else root)}
        n = len(files["train"])
        for split, fraction in (("test", self.test_fraction), ("val", self.val_fraction)):
            if presplit and (root / split).is_dir():
                files[split] = scan(root / split)
                continue
            labels = np.array([lab for _, lab in files["train"]])
            k = carve_count(f"{split}_fraction", fraction, n)
            rest, carved = stratified_split(labels, k, self.seed + (split == "val"))
            files[split] = [files["train"][i] for i in carved]
            files["train"] = [files["train"][i] for i in rest]
        if not files["train"]:
            raise UserError(f"val_fraction/test_fraction leave no training images out of {n} in {root}")
        return files

    def _load_splits(self):
        self.files = self._split_files()
        r = self.resolution
        tail = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
        plain = transforms.Compose([transforms.Resize((r, r)), *tail])
        train_tf = (
            transforms.Compose(
                [transforms.RandomResizedCrop(r, scale=(0.7, 1.0)), transforms.RandomHorizontalFlip(), *tail]
            )
            if self.augment
            else plain
        )
        self.eval_transform = plain if self.augment else None
        return (
            ImageFileDataset(self.files["train"], train_tf),
            ImageFileDataset(self.files["val"], plain),
            ImageFileDataset(self.files["test"], plain),
        )

"""LightningDataModules for the NAS tasks; ``DATAMODULES`` maps task name -> class."""

from lightning_nas.data.base import TaskDataModule
from lightning_nas.data.cifar10 import CIFAR10DataModule
from lightning_nas.data.digits import DigitsDataModule
from lightning_nas.data.kws import KWSDataModule
from lightning_nas.data.vww import VWWDataModule

DATAMODULES: dict[str, type[TaskDataModule]] = {
    "digits": DigitsDataModule,
    "cifar10": CIFAR10DataModule,
    "kws": KWSDataModule,
    "vww": VWWDataModule,
}

__all__ = ["TaskDataModule", "DigitsDataModule", "CIFAR10DataModule", "KWSDataModule", "VWWDataModule", "DATAMODULES"]

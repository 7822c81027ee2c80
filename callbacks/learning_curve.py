"""The learning curve of a run: per epoch its training loss, validation accuracy and whether it
trained digitally (warm-up) or hardware-aware."""

from __future__ import annotations

import math
from typing import Any, Optional

import lightning as L
import torch


class LearningCurve(L.Callback):
    """Record, after every training epoch, the mean training loss, the validation accuracy (%, of the
    validation run that ended the epoch; ``None`` in an epoch without one) and whether the model
    trained hardware-aware (analog layers) or digitally (the warm-up); log the latter as
    ``train/hardware_aware`` (0 or 1) per epoch, beside ``train/loss_epoch`` and ``val/acc``.

    :attr:`curve` holds ``{"epoch": [...], "train_loss": [...], "val_acc": [...],
    "hardware_aware": [...]}``: campaign rows store it as ``curves``. The loss is summed on the
    model's device and read once per epoch (no host sync per step)."""

    def __init__(self) -> None:
        self.curve: dict[str, list[Any]] = {"epoch": [], "train_loss": [], "val_acc": [], "hardware_aware": []}
        self._loss: Optional[torch.Tensor] = None
        self._batches = 0
        self._val: Optional[float] = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.__init__()  # type: ignore[misc]  # one curve per fit

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loss, self._batches, self._val = None, 0, None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._loss = loss.detach() if self._loss is None else self._loss + loss.detach()
            self._batches += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val/acc")
        self._val = float(value) if value is not None else None  # % (PercentAccuracy)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        analog = bool(getattr(pl_module, "is_analog", False))
        loss = float(self._loss) / self._batches if self._loss is not None and self._batches else math.nan
        self.curve["epoch"].append(trainer.current_epoch)
        self.curve["train_loss"].append(loss)
        self.curve["val_acc"].append(self._val)
        self.curve["hardware_aware"].append(analog)
        pl_module.log("train/hardware_aware", float(analog), on_step=False, on_epoch=True)

"""Program analog weights, drift them and measure accuracy (used by the callback and campaigns)."""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
from torch import nn

from lightning_nas.conversion import is_analog
from lightning_nas.errors import UserError


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable, device: torch.device) -> float:
    """Top-1 accuracy in percent of ``model`` over ``(x, y)`` batches."""
    correct = total = 0
    for x, y in batches:
        pred = model(x.to(device)).argmax(dim=1)
        correct += (pred == y.to(device)).sum().item()
        total += y.numel()
    if total == 0:
        raise UserError("the evaluation dataloader is empty; check the dataset split sizes")
    return 100.0 * correct / total


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable, device: torch.device) -> int:
    """Re-estimate every BatchNorm layer's running statistics from ``batches`` through ``model`` as it
    is now (the programmed, drifted analog weights; AdaBS, Joshi et al., Nature Communications 2020).
    The rest of the network stays in eval mode; returns the number of batches used."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the calibration batches
        m.train()
    used = 0
    for x, *_ in batches:
        model(x.to(device))
        used += 1
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    if not used:
        raise UserError("the BatchNorm recalibration batches are empty; check the training split's size")
    return used


def evaluate_drift(model: nn.Module, batches: Iterable, t_inference: Sequence[float], n_reps: int,
                   seed: int = 0, device: torch.device | str | None = None,
                   calibration: Iterable | None = None) -> dict[float, list[float]]:
    """Accuracy (percent) at each drift time for ``n_reps`` fresh programmings.

    Works on a deep copy, so ``model`` (weights, training mode, tile state) is left
    exactly as it was. Each repetition draws new programming noise; the RNG is
    seeded with ``seed`` and the global RNG state is restored afterwards.
    ``batches`` is iterated once per repetition and drift time (a DataLoader is
    fine; nothing is held in memory). With ``calibration`` (training batches), the BatchNorm
    statistics are re-estimated on the programmed chip at every drift time before it is measured
    (:func:`recalibrate_batchnorm`).
    """
    if not is_analog(model):
        raise UserError("drift evaluation needs an analog model; the network has no aihwkit analog layers "
                        "(is the digital warm-up still running?)")
    if n_reps < 1:
        raise UserError(f"n_reps must be >= 1, got {n_reps}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    results: dict[float, list[float]] = {float(t): [] for t in t_inference}
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):  # copying a tile draws random numbers too
        analog = copy.deepcopy(model).to(device).eval()
        for rep in range(n_reps):
            torch.manual_seed(seed * 100_003 + rep)
            analog.program_analog_weights()
            for t in sorted(results):
                analog.drift_analog_weights(t)
                if calibration is not None:
                    recalibrate_batchnorm(analog, calibration, device)
                results[t].append(accuracy(analog, batches, device))
    return results

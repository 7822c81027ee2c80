"""The whole analog network through ``torch.compile``: one graph per training and evaluation step.

On a GPU the fast path's step is launch-bound: each tile's DAC, weight noise, ADC and scales are
separate small kernels. Compiled whole (``fullgraph=True``), the periphery's operations are
plain PyTorch operations in autograd Functions (:mod:`lightning_nas.fast_analog`,
:mod:`lightning_nas.periphery.eager`), which Inductor fuses with each other and with the
neighbouring BatchNorm and ReLU kernels, forward and backward; with ``mode="reduce-overhead"``
the steady-state step is also replayed as a CUDA graph.

What stays outside the graph, by design: the input ranges' initialisation from data (the first
``init_from_data`` training batches read a counter on the host and update the ranges: the
network runs eagerly until every tile is done, :func:`~lightning_nas.fast_analog.ranges_initialised`),
the removal of aihwkit's weight-gradient hooks (:func:`~lightning_nas.fast_analog.take_over_weight_hooks`,
a Python loop before each call) and the optimizer step.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from torch import nn

from lightning_nas.errors import UserError

BACKEND = "inductor"
"""``torch.compile``'s backend (tests of the integration use ``aot_eager``: the same graphs, no code generation)."""

COMPILE_SETTINGS = ("auto", "off", "default", "reduce-overhead", "max-autotune")
Compile = Literal["auto", "off", "default", "reduce-overhead", "max-autotune"]


def compile_mode(setting: str, device: torch.device, analog: bool) -> Optional[str]:
    """The ``torch.compile`` mode that ``setting`` means for a network on ``device`` (``None``: eager).
    ``auto``: compiled on CUDA for an analog network (the fast path's launches, counted by
    ``benchmarks/op_count.py``), eager elsewhere (on the CPU the native periphery is faster)."""
    if setting not in COMPILE_SETTINGS:
        raise UserError(f"model.compile must be one of {', '.join(COMPILE_SETTINGS)}, got {setting!r}")
    if setting == "auto":
        return "default" if device.type == "cuda" and analog else None
    return None if setting == "off" else setting


class CompiledNetwork:
    """``net`` compiled whole (``fullgraph=True``, static shapes: one graph per batch size and
    train/eval); call it like the network. Runs ``net`` eagerly until its input ranges are
    initialised from data."""

    def __init__(self, net: nn.Module, mode: str = "default") -> None:
        self.net = net
        self.mode = mode
        options = {"mode": mode} if BACKEND == "inductor" else {}
        self.compiled = torch.compile(net, fullgraph=True, dynamic=False, backend=BACKEND, **options)
        self._ready = False

    def __call__(self, x: torch.Tensor) -> Any:
        from lightning_nas.fast_analog import ranges_initialised, take_over_weight_hooks

        if not self._ready:
            if self.net.training and torch.is_grad_enabled() and not ranges_initialised(self.net):
                return self.net(x)
            self._ready = ranges_initialised(self.net)
            if not self._ready:  # evaluation during the initialisation: eager, as training is
                return self.net(x)
        take_over_weight_hooks(self.net)
        return self.compiled(x)

    def reset(self) -> None:
        """Check the input ranges again (after a checkpoint load overwrote their counters)."""
        self._ready = False


def compile_network(net: nn.Module, mode: str = "default") -> CompiledNetwork:
    return CompiledNetwork(net, mode)

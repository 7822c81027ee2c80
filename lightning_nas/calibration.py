"""Input-range calibration: set every analog tile's DAC range from a digital pass over training data.

Why (see docs/findings/trainability.md, "Hardware-aware training from scratch: input-range calibration"): aihwkit initialises
a learned input range from data as ``init_std_alpha`` x the *standard deviation* of the tile's
input, over the first ``init_from_data`` batches, and does not learn it meanwhile. For a layer fed
by a ReLU (the classifier after global pooling, most convolutions) the inputs are non-negative with
a mean far above their spread, so 3 std sits below almost every input: the DAC clips all of them to
the same code, the layer sees a constant, its input gradient is zero, and the network stays at
chance for the whole window (100 batches is five digits epochs).

Calibration measures each layer's input *root mean square* (which covers the mean) on a seeded
sample of training batches, in a digital copy of the network with the same weights, sets every
tile's range to ``init_std_alpha`` x that RMS, and marks the tile's own initialisation as done, so
the range is learned from the first step. It changes only the starting value of a learned
parameter: the trained and evaluated model is the one the preset describes.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

# Layers a network of the space converts to analog (the digital copy's counterparts).
DIGITAL_LAYERS = (nn.Conv2d, nn.Linear)


@torch.no_grad()
def input_rms(net: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, float]:
    """RMS of the input of every Conv2d/Linear of the digital ``net`` over ``batches``, by module name."""
    sums: dict[str, list[float]] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            acc = sums.setdefault(name, [0.0, 0.0])
            acc[0] += float(x.double().square().sum())
            acc[1] += x.numel()
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in net.named_modules() if isinstance(m, DIGITAL_LAYERS)]
    try:
        for x in batches:
            net(x)
    finally:
        for h in handles:
            h.remove()
    return {name: (s / n) ** 0.5 for name, (s, n) in sums.items() if n}


@torch.no_grad()
def digital_copy(analog_net: nn.Module, digital_net: nn.Module) -> nn.Module:
    """Load ``analog_net``'s effective weights (tile weights with their scales) into ``digital_net``,
    a freshly built network of the same architecture; the other parameters and buffers (BatchNorm)
    are copied by name."""
    from aihwkit.nn.modules.base import AnalogLayerBase

    analog = dict(analog_net.named_modules())
    for name, module in digital_net.named_modules():
        source = analog.get(name)
        if isinstance(module, DIGITAL_LAYERS) and isinstance(source, AnalogLayerBase):
            weight, bias = source.get_weights()
            module.weight.copy_(weight.reshape(module.weight.shape))
            if module.bias is not None and bias is not None:
                module.bias.copy_(bias.reshape(module.bias.shape))
        elif source is not None and not list(module.children()) and not isinstance(module, DIGITAL_LAYERS):
            module.load_state_dict(source.state_dict())
    return digital_net


@torch.no_grad()
def set_input_ranges(analog_net: nn.Module, rms: dict[str, float], alpha: Optional[float] = None) -> dict[str, float]:
    """Set the input range of every tile of every analog layer named in ``rms`` to
    ``alpha x rms`` (``alpha``: the preset's ``init_std_alpha``) and end the tiles' own
    initialisation from data. Returns the ranges set, by layer name."""
    from aihwkit.nn.modules.base import AnalogLayerBase

    done: dict[str, float] = {}
    for name, layer in analog_net.named_modules():
        if not isinstance(layer, AnalogLayerBase) or name not in rms:
            continue
        for tile in layer.analog_tiles():  # several when the layer is split
            if getattr(tile, "input_range", None) is None:
                continue
            params = tile.rpu_config.pre_post.input_range
            value = max((alpha or params.init_std_alpha) * rms[name], 1e-6)
            tile.input_range.data.fill_(value)
            tile.input_range_update_idx.data.fill_(max(params.init_from_data, 1))
            done[name] = value
    return done

"""Conversion of a digital network to aihwkit analog layers, and loading their checkpoints."""

from __future__ import annotations

import functools
import importlib
from typing import Any

from torch import nn

from lightning_nas.analog import AnalogConfig


def convert(net: nn.Module, config: AnalogConfig) -> nn.Module:
    """Convert every Conv2d and Linear of ``net`` to aihwkit analog layers (a new module).

    With ``implementation: fast`` convolutions become
    :class:`~lightning_nas.fast_analog.FastAnalogConv2d` (an ``AnalogConv2d``) and linear layers
    :class:`~lightning_nas.fast_analog.FastAnalogLinear` (an ``AnalogLinear``); a preset the
    fast path can't reproduce exactly is an error, never a silent fallback.
    """
    from aihwkit.nn import AnalogConv2d, AnalogLinear
    from aihwkit.nn.conversion import convert_to_analog

    rpu = checked_rpu_config(config)
    conv_class, linear_class = AnalogConv2d, AnalogLinear
    if config.resolved().implementation == "fast":
        from lightning_nas.fast_analog import FastAnalogConv2d, FastAnalogLinear

        conv_class, linear_class = FastAnalogConv2d, FastAnalogLinear
    return convert_to_analog(net, rpu, conversion_map={nn.Conv2d: conv_class, nn.Linear: linear_class})


def checked_rpu_config(config: AnalogConfig) -> Any:
    """The aihwkit RPU config of ``config``, with every override and the implementation checked
    (a :class:`UserError` before any training, not in every campaign row)."""
    rpu = config.to_rpu_config()
    if config.resolved().implementation == "fast":
        from lightning_nas.fast_analog import check_supported

        check_supported(rpu)
    return rpu


def is_analog(module: nn.Module) -> bool:
    from aihwkit.nn.modules.base import AnalogLayerBase

    return any(isinstance(m, AnalogLayerBase) for m in module.modules())


# aihwkit stores its tile and RPU-config objects inside a layer's state, so checkpoints
# hold them. These (aihwkit's own config dataclasses, enums and tile classes) are
# allow-listed for ``torch.load(weights_only=True)``, which LightningCLI uses.
_CHECKPOINT_GLOBALS = (
    "aihwkit.simulator.configs.configs.TorchInferenceRPUConfig",
    "aihwkit.simulator.configs.devices.IdealDevice",
    "aihwkit.simulator.parameters.runtime.RuntimeParameter",
    "aihwkit.simulator.parameters.pre_post.InputRangeParameter",
    "aihwkit.simulator.parameters.pre_post.PrePostProcessingParameter",
    "aihwkit.simulator.parameters.io.IOParameters",
    "aihwkit.simulator.parameters.mapping.MappingParameter",
    "aihwkit.simulator.parameters.inference.WeightModifierParameter",
    "aihwkit.simulator.parameters.inference.WeightClipParameter",
    "aihwkit.simulator.parameters.inference.WeightRemapParameter",
    "aihwkit.simulator.parameters.training.UpdateParameters",
    "aihwkit.simulator.parameters.enums.WeightRemapType",
    "aihwkit.simulator.parameters.enums.BoundManagementType",
    "aihwkit.simulator.parameters.enums.WeightClipType",
    "aihwkit.simulator.parameters.enums.NoiseManagementType",
    "aihwkit.simulator.parameters.enums.RPUDataType",
    "aihwkit.simulator.parameters.enums.AnalogMVType",
    "aihwkit.simulator.parameters.enums.WeightNoiseType",
    "aihwkit.simulator.parameters.enums.WeightModifierType",
    "aihwkit.simulator.parameters.enums.PulseType",
    "aihwkit.simulator.tiles.inference_torch.TorchInferenceTile",
    "aihwkit.simulator.tiles.torch_tile.TorchSimulatorTile",
    "aihwkit.simulator.tiles.array.TileModuleArray",
    "aihwkit.inference.noise.pcm.PCMLikeNoiseModel",
    "aihwkit.inference.converter.conductance.SinglePairConductanceConverter",
    "aihwkit.inference.compensation.drift.GlobalDriftCompensation",
)


@functools.cache
def allow_analog_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read checkpoints of analog models (called by the
    module before anything loads a checkpoint; once per process)."""
    import torch

    classes = []
    for dotted in _CHECKPOINT_GLOBALS:
        module, name = dotted.rsplit(".", 1)
        classes.append(getattr(importlib.import_module(module), name))
    torch.serialization.add_safe_globals(classes)

"""Named analog presets and conversion of a digital network to aihwkit analog layers.

This is the one place that defines analog hardware settings. An
:class:`AnalogConfig` names a preset and may override any of its fields; it
resolves to one aihwkit ``TorchInferenceRPUConfig`` object (the *preset object*)
which every analog layer of a model shares and which everything downstream
reads.

Default preset ``pcm_hwa`` (hardware-aware training for PCM, as in AnalogNAS):

* additive Gaussian weight noise during training (``WeightModifierType.ADD_NORMAL``,
  std relative to the max |w| of each tile), not applied at evaluation;
* weight clipping to a fixed value after each update (applied by ``AnalogSGD``);
* 8-bit input (DAC) and output (ADC) quantisation, output noise;
* learned per-tile input ranges (no per-vector noise management, no iterative
  bound management) and column-wise weight scaling with learned output scales,
  as in aihwkit's ``StandardHWATrainingPreset``;
* tiles of at most 512 x 512 (larger layers are split into several tiles);
* ``PCMLikeNoiseModel(g_max=25)`` for programming noise, drift and read noise,
  with ``GlobalDriftCompensation``.

Fields with no counterpart in :class:`AnalogConfig` can still be set through
``rpu_overrides`` as dotted aihwkit paths, e.g. ``{"forward.out_bound": 10.0}``.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Optional

from torch import nn

from lightning_nas.errors import UserError


@dataclass
class AnalogConfig:
    """Analog hardware settings: a preset name plus optional overrides (``None`` = preset value)."""

    preset: str = "pcm_hwa"
    weight_noise_std: Optional[float] = None
    """Std of the additive Gaussian training weight noise, relative to max |w| (0 disables it)."""
    clip_value: Optional[float] = None
    """Weights are clipped to +-clip_value after every update (<= 0 disables clipping)."""
    inp_bits: Optional[int] = None
    """DAC resolution in bits (0 = no input quantisation)."""
    out_bits: Optional[int] = None
    """ADC resolution in bits (0 = no output quantisation)."""
    out_noise: Optional[float] = None
    """Additive Gaussian output noise std (in units of the output bound)."""
    tile_size: Optional[int] = None
    """Max input and output size of one tile (0 = one tile per layer)."""
    g_max: Optional[float] = None
    """Max conductance (uS) of the PCM noise model."""
    drift_compensation: Optional[bool] = None
    """Global drift compensation at evaluation."""
    input_range: Optional[bool] = None
    """Learned per-tile input ranges (clip + scale the DAC input); replaces per-vector
    noise management and iterative bound management (both off when this is on)."""
    out_scaling: Optional[bool] = None
    """Map weights column-wise to the full conductance range (omega = 1) and learn
    column-wise digital output scales."""
    rpu_overrides: dict[str, Any] = field(default_factory=dict)
    """Any other aihwkit RPU-config field as a dotted path, e.g. ``forward.out_bound``."""
    implementation: Optional[Literal["fast", "aihwkit"]] = None
    """How analog convolutions are computed: ``fast`` (convolutions with the same tile
    semantics, :mod:`lightning_nas.fast_analog`) or ``aihwkit`` (the reference unfold path).
    Not a hardware setting: both give the same analog model."""

    def resolved(self) -> "AnalogConfig":
        """The preset's values with this config's non-``None`` overrides applied."""
        if self.preset not in PRESETS:
            raise UserError(f"unknown analog preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        base = PRESETS[self.preset]
        overrides = {f.name: getattr(self, f.name) for f in fields(self)
                     if f.name not in ("preset", "rpu_overrides") and getattr(self, f.name) is not None}
        merged = replace(base, **overrides, rpu_overrides={**base.rpu_overrides, **self.rpu_overrides})
        merged.check()
        return merged

    def check(self) -> None:
        for name in ("weight_noise_std", "out_noise", "g_max"):
            if getattr(self, name) < 0:
                raise UserError(f"analog.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("inp_bits", "out_bits"):
            bits = getattr(self, name)
            if bits != 0 and not 2 <= bits <= 16:
                raise UserError(f"analog.{name} must be 0 (off) or 2..16, got {bits}")
        if self.tile_size < 0:
            raise UserError(f"analog.tile_size must be >= 0 (0 = unlimited), got {self.tile_size}")
        if self.g_max == 0:
            raise UserError("analog.g_max must be > 0 (uS), got 0")
        if self.implementation not in ("fast", "aihwkit"):
            raise UserError(f"analog.implementation must be 'fast' or 'aihwkit', got {self.implementation!r}")

    def features(self) -> dict[str, float]:
        """Numeric description of the hardware (surrogate features)."""
        r = self.resolved()
        return {"weight_noise_std": r.weight_noise_std, "inp_bits": r.inp_bits, "out_bits": r.out_bits,
                "out_noise": r.out_noise, "tile_size": r.tile_size, "g_max": r.g_max}

    def to_rpu_config(self):
        """Build the aihwkit ``TorchInferenceRPUConfig`` (the single preset object)."""
        from aihwkit.inference.compensation.drift import GlobalDriftCompensation
        from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
        from aihwkit.simulator.configs import TorchInferenceRPUConfig
        from aihwkit.simulator.parameters.enums import (
            BoundManagementType, NoiseManagementType, WeightClipType, WeightModifierType)

        r = self.resolved()
        rpu = TorchInferenceRPUConfig()
        if r.weight_noise_std > 0:
            rpu.modifier.type = WeightModifierType.ADD_NORMAL
            rpu.modifier.std_dev = r.weight_noise_std
        else:
            rpu.modifier.type = WeightModifierType.NONE
        if r.clip_value > 0:
            rpu.clip.type = WeightClipType.FIXED_VALUE
            rpu.clip.fixed_value = r.clip_value
        else:
            rpu.clip.type = WeightClipType.NONE
        rpu.forward.inp_res = 1.0 / (2 ** r.inp_bits - 2) if r.inp_bits else -1
        rpu.forward.out_res = 1.0 / (2 ** r.out_bits - 2) if r.out_bits else -1
        rpu.forward.out_noise = r.out_noise
        rpu.mapping.max_input_size = r.tile_size
        rpu.mapping.max_output_size = r.tile_size
        if r.input_range:
            rpu.pre_post.input_range.enable = True
            rpu.forward.noise_management = NoiseManagementType.NONE
            rpu.forward.bound_management = BoundManagementType.NONE
        if r.out_scaling:
            rpu.mapping.weight_scaling_omega = 1.0
            rpu.mapping.weight_scaling_columnwise = True
            rpu.mapping.learn_out_scaling = True
            rpu.mapping.out_scaling_columnwise = True
        rpu.noise_model = PCMLikeNoiseModel(g_max=r.g_max)
        rpu.drift_compensation = GlobalDriftCompensation() if r.drift_compensation else None
        for path, value in r.rpu_overrides.items():
            _set_dotted(rpu, path, value)
        return rpu


def _set_dotted(obj: Any, path: str, value: Any) -> None:
    parts = path.split(".")
    target = obj
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(target) or part not in {f.name for f in fields(target)}:
            where = ".".join(parts[:i]) or type(obj).__name__
            raise UserError(f"analog.rpu_overrides: {where!r} has no field {part!r} (in {path!r}); "
                            "see aihwkit's TorchInferenceRPUConfig for valid paths")
        if i < len(parts) - 1:
            target = getattr(target, part)
    current = getattr(target, parts[-1])
    if isinstance(current, enum.Enum) and isinstance(value, str):
        try:
            value = type(current)[value.upper()] if value.upper() in type(current).__members__ else type(current)(value)
        except ValueError:
            raise UserError(f"analog.rpu_overrides[{path!r}] = {value!r}; allowed: "
                            f"{', '.join(type(current).__members__)}") from None
    setattr(target, parts[-1], value)


PRESETS: dict[str, AnalogConfig] = {
    # PCM hardware-aware training (the default).
    "pcm_hwa": AnalogConfig(preset="pcm_hwa", weight_noise_std=0.08, clip_value=1.0, inp_bits=8, out_bits=8,
                            out_noise=0.04, tile_size=512, g_max=25.0, drift_compensation=True,
                            input_range=True, out_scaling=True, implementation="fast"),
    # The same hardware for evaluation, trained without weight noise (HWA ablation).
    "pcm_no_hwa": AnalogConfig(preset="pcm_no_hwa", weight_noise_std=0.0, clip_value=1.0, inp_bits=8,
                               out_bits=8, out_noise=0.04, tile_size=512, g_max=25.0, drift_compensation=True,
                               input_range=True, out_scaling=True, implementation="fast"),
    # aihwkit's default periphery management: per-input-vector abs-max noise management
    # and iterative bound management instead of learned input ranges and output scales.
    "pcm_hwa_absmax": AnalogConfig(preset="pcm_hwa_absmax", weight_noise_std=0.08, clip_value=1.0, inp_bits=8,
                                   out_bits=8, out_noise=0.04, tile_size=512, g_max=25.0,
                                   drift_compensation=True, input_range=False, out_scaling=False,
                                   implementation="aihwkit"),  # per-vector scaling needs the unfold path
    # Ideal periphery: no weight noise in training, no quantisation, no output noise
    # (programming noise and drift still come from the PCM model at evaluation).
    "ideal_periphery": AnalogConfig(preset="ideal_periphery", weight_noise_std=0.0, clip_value=0.0, inp_bits=0,
                                    out_bits=0, out_noise=0.0, tile_size=0, g_max=25.0,
                                    drift_compensation=True, input_range=False, out_scaling=False,
                                    rpu_overrides={"forward.is_perfect": True}, implementation="fast"),
}


def convert(net: nn.Module, config: AnalogConfig) -> nn.Module:
    """Convert every Conv2d and Linear of ``net`` to aihwkit analog layers (a new module).

    With ``implementation: fast`` convolutions become
    :class:`~lightning_nas.fast_analog.FastAnalogConv2d` (an ``AnalogConv2d``); a preset the
    fast path can't reproduce exactly is an error, never a silent fallback.
    """
    from aihwkit.nn import AnalogConv2d, AnalogLinear
    from aihwkit.nn.conversion import convert_to_analog

    rpu = config.to_rpu_config()
    conv_class = AnalogConv2d
    if config.resolved().implementation == "fast":
        from lightning_nas.fast_analog import FastAnalogConv2d, check_supported

        check_supported(rpu)
        conv_class = FastAnalogConv2d
    return convert_to_analog(net, rpu, conversion_map={nn.Conv2d: conv_class, nn.Linear: AnalogLinear})


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


def allow_analog_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read checkpoints of analog models."""
    import importlib

    import torch

    classes = []
    for dotted in _CHECKPOINT_GLOBALS:
        module, name = dotted.rsplit(".", 1)
        classes.append(getattr(importlib.import_module(module), name))
    torch.serialization.add_safe_globals(classes)


allow_analog_checkpoints()

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

Importing this module imports neither torch nor aihwkit (the surrogate and the search use
the hardware features); converting a network lives in :mod:`lightning_nas.conversion`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Optional

from lightning_nas.errors import UserError


# The analog settings a surrogate takes as inputs (in this order).
HARDWARE_FEATURES = ("weight_noise_std", "inp_bits", "out_bits", "out_noise", "tile_size", "g_max")


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

    def hardware_features(self) -> dict[str, float]:
        """Numeric description of the hardware (surrogate inputs), the fields of :data:`HARDWARE_FEATURES`."""
        r = self.resolved()
        return {name: float(getattr(r, name)) for name in HARDWARE_FEATURES}

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
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(current, bool) and not isinstance(value, bool):
        raise UserError(f"analog.rpu_overrides[{path!r}] must be true or false, got {value!r}")
    if isinstance(current, (int, float)) and not isinstance(current, bool) and not number:
        raise UserError(f"analog.rpu_overrides[{path!r}] must be a number, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float) \
            and not value.is_integer():
        raise UserError(f"analog.rpu_overrides[{path!r}] must be an integer, got {value!r}")
    if isinstance(current, enum.Enum) and not isinstance(value, (str, enum.Enum)):
        raise UserError(f"analog.rpu_overrides[{path!r}] must be one of {', '.join(type(current).__members__)}, "
                        f"got {value!r}")
    if isinstance(current, enum.Enum) and isinstance(value, str):
        try:
            value = type(current)[value.upper()] if value.upper() in type(current).__members__ else type(current)(value)
        except ValueError:
            raise UserError(f"analog.rpu_overrides[{path!r}] = {value!r}; allowed: "
                            f"{', '.join(type(current).__members__)}") from None
    setattr(target, parts[-1], value)


# The base preset states every field; the others state only how they differ from it.
PCM_HWA = AnalogConfig(preset="pcm_hwa", weight_noise_std=0.08, clip_value=1.0, inp_bits=8, out_bits=8,
                       out_noise=0.04, tile_size=512, g_max=25.0, drift_compensation=True,
                       input_range=True, out_scaling=True, implementation="fast")


def derive(base: AnalogConfig, name: str, **differences: Any) -> AnalogConfig:
    """A preset named ``name``: ``base`` with ``differences``."""
    return replace(base, preset=name, **differences)


PRESETS: dict[str, AnalogConfig] = {p.preset: p for p in (
    # PCM hardware-aware training (the default).
    PCM_HWA,
    # The same hardware for evaluation, trained without weight noise (HWA ablation).
    derive(PCM_HWA, "pcm_no_hwa", weight_noise_std=0.0),
    # aihwkit's default periphery management: per-input-vector abs-max noise management and
    # iterative bound management instead of learned input ranges and output scales (per-vector
    # scaling needs aihwkit's unfold path).
    derive(PCM_HWA, "pcm_hwa_absmax", input_range=False, out_scaling=False, implementation="aihwkit"),
    # Ideal periphery: no weight noise or clipping in training, no quantisation, no output noise,
    # one tile per layer (programming noise and drift still come from the PCM model at evaluation).
    derive(PCM_HWA, "ideal_periphery", weight_noise_std=0.0, clip_value=0.0, inp_bits=0, out_bits=0,
           out_noise=0.0, tile_size=0, input_range=False, out_scaling=False,
           rpu_overrides={"forward.is_perfect": True}),
)}


def preset_differences(name: str) -> dict[str, Any]:
    """The fields in which preset ``name`` differs from the base preset ``pcm_hwa``."""
    preset = PRESETS[name]
    return {f.name: getattr(preset, f.name) for f in fields(preset)
            if f.name != "preset" and getattr(preset, f.name) != getattr(PCM_HWA, f.name)}


def preset_table() -> str:
    """The preset table of docs/reference/configuration.md (Markdown), generated from :data:`PRESETS`."""
    def cell(value: Any) -> str:
        return ", ".join(f"`{k}: {v}`" for k, v in value.items()) if isinstance(value, dict) else f"`{value}`"

    lines = ["| preset | settings |", "|---|---|",
             "| `pcm_hwa` (default, the base) | " + ", ".join(
                 f"{f.name} {cell(getattr(PCM_HWA, f.name))}" for f in fields(PCM_HWA)
                 if f.name not in ("preset", "rpu_overrides")) + " |"]
    for name in PRESETS:
        if name != PCM_HWA.preset:
            lines.append(f"| `{name}` | as `pcm_hwa` except " + ", ".join(
                f"{k} {cell(v)}" for k, v in preset_differences(name).items()) + " |")
    return "\n".join(lines)

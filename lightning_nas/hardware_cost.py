"""Analog hardware cost of an architecture: crossbar tiles, MVMs, ADC conversions, latency, energy.

Every convolution and the classifier become analog layers (:mod:`lightning_nas.conversion`); batch
norm, ReLU, pooling and residual additions stay digital and are not costed here. aihwkit maps an
analog layer onto a weight matrix of ``rows = C_in * k * k`` inputs (the bias is digital) by
``cols = C_out`` outputs and splits it over tiles of at most ``tile_size`` x ``tile_size``
(balanced splits, :class:`aihwkit.simulator.tiles.array.TileModuleArray`): the layer occupies
``ceil(rows / tile_size) * ceil(cols / tile_size)`` tiles. One inference of a convolution runs one
matrix-vector multiplication (MVM) per output position on each of its tiles, and each tile MVM
converts one ADC sample per column it holds.

Latency and energy come from per-operation constants of a chip (:class:`ChipConfig`); the
defaults are IBM's 64-core PCM chip (HERMES, Le Gallo et al., *Nature Electronics* 6, 680-693,
2023): 64 cores of 256 x 256 unit cells, 63.1 TOPS peak (hence 133 ns per full-core MVM:
2 x 256 x 256 ops / (63.1 TOPS / 64 cores)) at 9.76 TOPS/W peak (hence 0.1025 pJ per op). The
model: the tiles of one layer work in parallel, layers (and the branches of a block) one after the
other, and a tile MVM costs the energy of its whole array (ADCs and drivers of unused rows and
columns still run), so poorly used tiles cost energy. A user describes another chip by
overriding these constants.

Importing this module imports neither torch nor aihwkit (the search uses it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Optional, Sequence

from lightning_nas.errors import UserError
from lightning_nas.blocks import network_layers
from lightning_nas.space import Architecture


@dataclass
class ChipConfig:
    """Per-operation constants of an analog in-memory-computing chip (defaults: IBM HERMES, 2023)."""

    n_tiles: int = 64
    """Crossbar tiles (cores) on the chip; an architecture needing more does not fit."""
    mvm_latency_ns: float = 133.0
    """Time of one MVM on one tile (ns)."""
    energy_per_op_pj: float = 1.0 / 9.76
    """Energy of one multiply or add in a tile (pJ); one tile MVM is 2 x tile rows x tile columns ops."""
    tile_size: Optional[int] = None
    """Rows and columns of one tile; ``None`` = the analog config's ``tile_size`` (what aihwkit maps)."""

    def check(self) -> None:
        if isinstance(self.n_tiles, bool) or not isinstance(self.n_tiles, int) or self.n_tiles < 1:
            raise UserError(f"chip.n_tiles must be an integer >= 1, got {self.n_tiles!r}")
        for name in ("mvm_latency_ns", "energy_per_op_pj"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UserError(f"chip.{name} must be a number > 0, got {value!r}")
        if self.tile_size is not None and (not isinstance(self.tile_size, int) or self.tile_size < 0):
            raise UserError(f"chip.tile_size must be an integer >= 0 (0 = one tile per layer), got {self.tile_size!r}")


@dataclass(frozen=True)
class LayerCost:
    """One analog layer as mapped onto tiles."""

    name: str
    rows: int
    cols: int
    positions: int
    """Output positions per inference (H_out x W_out; 1 for the classifier)."""
    row_splits: int
    col_splits: int

    @property
    def tiles(self) -> int:
        return self.row_splits * self.col_splits

    @property
    def mvms(self) -> int:
        return self.positions * self.tiles

    @property
    def adc_conversions(self) -> int:
        return self.positions * self.cols * self.row_splits


@dataclass(frozen=True, eq=False)
class HardwareCost:
    """The analog cost of one inference of one architecture on one chip."""

    raw: tuple[tuple[str, int, int, int], ...]
    """``(name, rows, cols, positions)`` of every analog layer (:func:`analog_layers`)."""
    tile_rows: int
    tile_cols: int
    chip: ChipConfig = field(compare=False)

    @cached_property
    def layers(self) -> tuple[LayerCost, ...]:
        return tuple(LayerCost(name, rows, cols, positions, _splits(rows, self.tile_rows), _splits(cols, self.tile_cols))
                     for name, rows, cols, positions in self.raw)

    @cached_property
    def _totals(self) -> tuple[int, float, int, int, int, int]:
        """One pass over the layers: tiles, utilisation, MVMs, ADC conversions, positions, tile ops."""
        tiles = used = occupied = mvms = adc = positions = ops = 0
        tr, tc = self.tile_rows, self.tile_cols
        for _, rows, cols, at in self.raw:
            row_splits = -(-rows // tr) if tr > 0 else 1
            n = row_splits * (-(-cols // tc) if tc > 0 else 1)
            cells = (tr or rows) * (tc or cols)  # tile size 0: the layer's own size
            tiles += n
            used += rows * cols
            occupied += n * cells
            mvms += at * n
            adc += at * cols * row_splits
            positions += at
            ops += at * n * 2 * cells
        return tiles, used / occupied, mvms, adc, positions, ops

    @property
    def tiles(self) -> int:
        return self._totals[0]

    @property
    def utilisation(self) -> float:
        """Weights over the cells of the tiles they occupy (0..1)."""
        return self._totals[1]

    @property
    def mvms(self) -> int:
        return self._totals[2]

    @property
    def adc_conversions(self) -> int:
        return self._totals[3]

    @property
    def latency_us(self) -> float:
        return self._totals[4] * self.chip.mvm_latency_ns / 1000.0

    @property
    def energy_uj(self) -> float:
        """A tile MVM costs its whole array: 2 x rows x columns ops."""
        return self._totals[5] * self.chip.energy_per_op_pj / 1e6

    @property
    def fits_chip(self) -> bool:
        return self.tiles <= self.chip.n_tiles

    def summary(self) -> dict[str, Any]:
        """The figures the search, ``space`` and ``retrain`` show (see :data:`COST_FIELDS`)."""
        return {"tiles": self.tiles, "utilisation": round(self.utilisation, 4), "mvms": self.mvms,
                "adc_conversions": self.adc_conversions, "latency_us": round(self.latency_us, 3),
                "energy_uj": round(self.energy_uj, 4), "fits_chip": self.fits_chip}


COST_FIELDS = ("tiles", "utilisation", "mvms", "adc_conversions", "latency_us", "energy_uj", "fits_chip")
"""What :meth:`HardwareCost.summary` reports, in order (usable as search objectives)."""

COST_UNITS = {"tiles": "tiles", "utilisation": "fraction", "mvms": "MVMs", "adc_conversions": "conversions",
              "latency_us": "us", "energy_uj": "uJ", "fits_chip": "bool"}


def _splits(size: int, tile: int) -> int:
    return 1 if tile <= 0 else math.ceil(size / tile)


def hardware_cost(arch: Architecture, in_shape: Sequence[int], n_classes: int, tile_size: int,
                  chip: Optional[ChipConfig] = None) -> HardwareCost:
    """The tiles, MVMs, ADC conversions, latency and energy of one inference of ``arch``."""
    chip = chip or ChipConfig()
    chip.check()
    tile = tile_size if chip.tile_size is None else chip.tile_size
    return HardwareCost(tuple(analog_layers(arch, in_shape, n_classes)), tile, tile, chip)


def analog_layers(arch: Architecture, in_shape: Sequence[int], n_classes: int) -> list[tuple[str, int, int, int]]:
    """``(name, rows, cols, positions)`` of every analog layer in the network's order
    (:func:`lightning_nas.blocks.network_layers`: the stem, per block each branch's convolutions
    then the shortcut projection, the classifier)."""
    return [(layer.name, layer.rows, layer.cols, layer.positions) for layer in network_layers(arch, in_shape, n_classes)]


def chip_from(value: Any) -> ChipConfig:
    """A :class:`ChipConfig` from a mapping (config files) or itself; unknown keys are one error."""
    if isinstance(value, ChipConfig):
        return value
    if value is None:
        return ChipConfig()
    if not isinstance(value, dict):
        raise UserError(f"chip must be a mapping of {', '.join(f.name for f in fields(ChipConfig))}, got {value!r}")
    unknown = set(value) - {f.name for f in fields(ChipConfig)}
    if unknown:
        raise UserError(f"unknown chip field(s) {', '.join(sorted(unknown))}; use "
                        f"{', '.join(f.name for f in fields(ChipConfig))}")
    chip = ChipConfig(**value)
    chip.check()
    return chip

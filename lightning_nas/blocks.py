"""The layers of an architecture, described once: what the network builder builds, what
:func:`n_params` counts and what the hardware cost model maps onto tiles.

:func:`stage_plan` lays out the blocks (widths, strides); :func:`block_layers` lists one block's
convolutions (:class:`ConvSpec`: channels, kernel, stride, groups) and its shortcut;
:func:`network_layers` lists every weight layer of the network with its output positions. Every
convolution is followed by a batch norm (its two affine parameters per channel are counted); the
classifier is one linear layer with a bias. Pure Python (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from lightning_nas.space import Architecture

BOTTLENECK_REDUCTION = 4  # type-B blocks squeeze to width // 4 channels in the 3x3 conv


@dataclass(frozen=True)
class BlockPlan:
    """One residual block: its input channels, width, stride, branches, type and skip."""

    in_channels: int
    width: int
    stride: int
    branches: int
    convblock: str
    skip: bool

    @property
    def projection(self) -> bool:
        """A 1x1 conv + BN shortcut is needed when the residual changes shape."""
        return self.skip and (self.in_channels != self.width or self.stride != 1)

    @property
    def bottleneck_width(self) -> int:
        return max(1, self.width // BOTTLENECK_REDUCTION)


@dataclass(frozen=True)
class ConvSpec:
    """A convolution without bias followed by a batch norm (``padding = kernel // 2``)."""

    label: str
    """Its name inside a branch (``conv1``, ``squeeze``, ...) or ``shortcut`` / ``stem``."""
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    groups: int = 1

    @property
    def rows(self) -> int:
        """Inputs of its weight matrix (what an analog tile's rows hold)."""
        return self.in_channels // self.groups * self.kernel ** 2

    @property
    def params(self) -> int:
        """Weights plus the batch norm's affine parameters."""
        return self.rows * self.out_channels + 2 * self.out_channels

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        """The output map of an ``h`` x ``w`` input."""
        pad = self.kernel // 2
        return ((h + 2 * pad - self.kernel) // self.stride + 1, (w + 2 * pad - self.kernel) // self.stride + 1)


@dataclass(frozen=True)
class BlockLayers:
    """A block's convolutions: ``branches`` copies of ``branch`` (a ReLU between consecutive
    convolutions, outputs summed) and an optional projection ``shortcut``."""

    branch: tuple[ConvSpec, ...]
    branches: int
    shortcut: Optional[ConvSpec]

    @property
    def params(self) -> int:
        return self.branches * sum(c.params for c in self.branch) + (self.shortcut.params if self.shortcut else 0)


@lru_cache(maxsize=65536)
def block_layers(b: BlockPlan) -> BlockLayers:
    """The convolutions of block ``b``: type A is 3x3 -> 3x3 (the first strides), type B the
    bottleneck 1x1 squeeze -> 3x3 (strides) -> 1x1 expand; a 1x1 projection shortcut where the
    residual changes shape."""
    branch: tuple[ConvSpec, ...]
    if b.convblock == "A":
        branch = (ConvSpec("conv1", b.in_channels, b.width, 3, b.stride), ConvSpec("conv2", b.width, b.width, 3))
    else:
        m = b.bottleneck_width
        branch = (ConvSpec("squeeze", b.in_channels, m, 1), ConvSpec("conv", m, m, 3, b.stride),
                  ConvSpec("expand", m, b.width, 1))
    shortcut = ConvSpec("shortcut", b.in_channels, b.width, 1, b.stride) if b.projection else None
    return BlockLayers(branch, b.branches, shortcut)


@lru_cache(maxsize=65536)
def block_params(b: BlockPlan) -> int:
    return block_layers(b).params


@dataclass(frozen=True)
class LinearSpec:
    """A linear layer with a bias (the classifier)."""

    in_features: int
    out_features: int

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + self.out_features


def stem_layer(arch: "Architecture", in_channels: int) -> ConvSpec:
    """The stem: ``out_channel0`` channels with a ``kernel0`` kernel over the input's channels."""
    return ConvSpec("stem", in_channels, arch.out_channel0, arch.kernel0)


def classifier_layer(arch: "Architecture", n_classes: int) -> LinearSpec:
    """The classifier over the pooled last stage."""
    return LinearSpec(stage_widths(arch)[-1], n_classes)


def stage_widths(arch: "Architecture") -> list[int]:
    widths, prev = [], arch.out_channel0
    for s in arch.stages:
        prev = int(round(prev * s.widenfact))
        widths.append(prev)
    return widths


def stage_plan(arch: "Architecture", input_hw: tuple[int, int]) -> list[list[BlockPlan]]:
    """Blocks of every stage. Every stage after the first halves the feature map at
    its first block (stride 2) while the map is larger than 1x1."""
    h, w = input_hw
    plan, in_ch = [], arch.out_channel0
    for i, (stage, width) in enumerate(zip(arch.stages, stage_widths(arch))):
        blocks = []
        for r in range(stage.R):
            stride = 2 if (i > 0 and r == 0 and (h > 1 or w > 1)) else 1
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2
            blocks.append(BlockPlan(in_ch, width, stride, stage.B, stage.convblock, stage.skip))
            in_ch = width
        plan.append(blocks)
    return plan


@dataclass(frozen=True)
class Layer:
    """One weight layer of the network: its name (the module path), weight matrix and positions."""

    name: str
    rows: int
    cols: int
    positions: int
    """Output positions per inference (H_out x W_out; 1 for the classifier)."""
    params: int


def _conv_layer(name: str, conv: ConvSpec, out_hw: tuple[int, int]) -> Layer:
    return Layer(name, conv.rows, conv.out_channels, out_hw[0] * out_hw[1], conv.params)


def network_layers(arch: "Architecture", in_shape: Sequence[int], n_classes: int) -> list[Layer]:
    """Every convolution and the classifier, in the network's order, with their output positions."""
    c, h, w = in_shape
    stem = stem_layer(arch, c)
    layers = [_conv_layer("stem", stem, stem.out_hw(h, w))]
    for s, blocks in enumerate(stage_plan(arch, (h, w))):
        for r, b in enumerate(blocks):
            spec = block_layers(b)
            for k in range(spec.branches):
                at = (h, w)  # each branch, like the shortcut, reads the block's input map
                for conv in spec.branch:
                    at = conv.out_hw(*at)
                    layers.append(_conv_layer(f"stages.{s}.{r}.branches.{k}.{conv.label}", conv, at))
            if spec.shortcut is not None:
                layers.append(_conv_layer(f"stages.{s}.{r}.shortcut", spec.shortcut, spec.shortcut.out_hw(h, w)))
            h, w = at
    classifier = classifier_layer(arch, n_classes)
    layers.append(Layer("classifier", classifier.in_features, n_classes, 1, classifier.params))
    return layers


def n_params(arch: "Architecture", in_shape: Sequence[int], n_classes: int) -> int:
    """Trainable parameters of the built network, computed without building it.

    ``in_shape`` is ``(C, H, W)``.
    """
    c, h, w = in_shape
    total = stem_layer(arch, c).params + classifier_layer(arch, n_classes).params
    for blocks in stage_plan(arch, (h, w)):
        total += sum(block_params(b) for b in blocks)
    return total

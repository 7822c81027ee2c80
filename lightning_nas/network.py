"""Build the (digital) torch network of an :class:`~lightning_nas.space.Architecture`.

The layers come from :mod:`lightning_nas.blocks` (:func:`~lightning_nas.blocks.stage_plan`,
:func:`~lightning_nas.blocks.block_layers`), the same description that
:func:`~lightning_nas.blocks.n_params` counts and the hardware cost model maps, so they can never
disagree.
Convolutions and the classifier are the layers that later become analog tiles;
batch norm stays digital.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lightning_nas.blocks import BlockPlan, ConvSpec, block_layers, classifier_layer, stage_plan, stem_layer
from lightning_nas.space import Architecture


def build_conv(spec: ConvSpec) -> nn.Sequential:
    """The convolution (no bias, ``padding = kernel // 2``) + batch norm of one
    :class:`~lightning_nas.blocks.ConvSpec`."""
    return nn.Sequential(
        nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, stride=spec.stride, padding=spec.kernel // 2,
                  groups=spec.groups, bias=False),
        nn.BatchNorm2d(spec.out_channels),
    )


def _branch(convs: Sequence[ConvSpec]) -> nn.Sequential:
    """One branch: its convolutions with a ReLU between consecutive ones."""
    layers: list[nn.Module] = []
    for k, spec in enumerate(convs):
        if k:
            layers.append(nn.ReLU(inplace=True))
        layers.append(build_conv(spec))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """``B`` parallel branches whose outputs are summed, plus an optional shortcut."""

    def __init__(self, plan: BlockPlan) -> None:
        super().__init__()
        spec = block_layers(plan)
        self.branches = nn.ModuleList(_branch(spec.branch) for _ in range(spec.branches))
        self.skip = plan.skip
        self.shortcut = build_conv(spec.shortcut) if spec.shortcut is not None else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        if self.skip:
            out = out + self.shortcut(x)
        return self.relu(out)


class ResNetLike(nn.Module):
    def __init__(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, h, w = input_shape
        self.arch = arch
        self.stem = nn.Sequential(build_conv(stem_layer(arch, c)), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(*(nn.Sequential(*(ResidualBlock(b) for b in blocks))
                                      for blocks in stage_plan(arch, (h, w))))
        self.pool = nn.AdaptiveAvgPool2d(1)
        classifier = classifier_layer(arch, num_classes)
        self.classifier = nn.Linear(classifier.in_features, classifier.out_features)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


def build_network(arch: Architecture, input_shape: Sequence[int], num_classes: int) -> ResNetLike:
    """Digital network for ``arch`` on inputs of shape ``(C, H, W)`` with ``num_classes`` outputs."""
    return ResNetLike(arch, input_shape, num_classes)

"""Build the (digital) torch network of an :class:`~lightning_nas.space.Architecture`.

The structure comes from :func:`lightning_nas.space.stage_plan`, the same plan that
:func:`lightning_nas.space.n_params` counts, so the two can never disagree.
Convolutions and the classifier are the layers that later become analog tiles;
batch norm stays digital.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lightning_nas.space import Architecture, BlockPlan, stage_plan, stage_widths


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    )


def _branch(plan: BlockPlan) -> nn.Sequential:
    if plan.convblock == "A":  # basic: 3x3 -> 3x3
        return nn.Sequential(conv_bn(plan.in_channels, plan.width, 3, plan.stride), nn.ReLU(inplace=True),
                             conv_bn(plan.width, plan.width, 3))
    m = plan.bottleneck_width  # bottleneck: 1x1 -> 3x3 -> 1x1
    return nn.Sequential(conv_bn(plan.in_channels, m, 1), nn.ReLU(inplace=True),
                         conv_bn(m, m, 3, plan.stride), nn.ReLU(inplace=True),
                         conv_bn(m, plan.width, 1))


class ResidualBlock(nn.Module):
    """``B`` parallel branches whose outputs are summed, plus an optional shortcut."""

    def __init__(self, plan: BlockPlan) -> None:
        super().__init__()
        self.branches = nn.ModuleList(_branch(plan) for _ in range(plan.branches))
        self.skip = plan.skip
        self.shortcut = conv_bn(plan.in_channels, plan.width, 1, plan.stride) if plan.projection else nn.Identity()
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
        self.stem = nn.Sequential(conv_bn(c, arch.out_channel0, arch.kernel0), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(*(nn.Sequential(*(ResidualBlock(b) for b in blocks))
                                      for blocks in stage_plan(arch, (h, w))))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(stage_widths(arch)[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


def build_network(arch: Architecture, input_shape: Sequence[int], num_classes: int) -> ResNetLike:
    """Digital network for ``arch`` on inputs of shape ``(C, H, W)`` with ``num_classes`` outputs."""
    return ResNetLike(arch, input_shape, num_classes)

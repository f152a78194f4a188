"""ResNet (He et al. 2016) as a ParaDiS network; ``resnet50`` is torchvision's ResNet-50 at [1.0]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from paradis.layers import RangeConv2d, RangeLinear, SwitchableBatchNorm2d, SwitchContext, global_avg_pool
from paradis.models.base import ParaDiSModel


class Shortcut(nn.Module):
    """A 1x1 projection shortcut; block diagonal, so each sub-network keeps its own residual path."""

    def __init__(self, in_base: int, out_base: int, stride: int, max_width: float, in_stage: int, stage: int):
        super().__init__()
        self.conv = RangeConv2d(in_base, out_base, 1, stride=stride, max_width=max_width).set_stage(in_stage, stage)
        self.bn = SwitchableBatchNorm2d(out_base, max_width=max_width).set_stage(stage)

    def forward(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        return self.bn(self.conv(x, ctx), ctx)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_base: int, planes: int, stride: int, max_width: float, in_stage: int = 0, stage: int = 0):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = RangeConv2d(in_base, planes, 3, stride=stride, max_width=max_width).set_stage(in_stage, stage)
        self.bn1 = SwitchableBatchNorm2d(planes, max_width=max_width).set_stage(stage)
        self.conv2 = RangeConv2d(planes, out, 3, max_width=max_width).set_stage(stage)
        self.bn2 = SwitchableBatchNorm2d(out, max_width=max_width).set_stage(stage)
        projection = stride != 1 or in_base != out or in_stage != stage
        self.shortcut = Shortcut(in_base, out, stride, max_width, in_stage, stage) if projection else None

    def forward(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x, ctx), ctx))
        y = self.bn2(self.conv2(y, ctx), ctx)
        identity = x if self.shortcut is None else self.shortcut(x, ctx)
        return F.relu(y + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, in_base: int, planes: int, stride: int, max_width: float, in_stage: int = 0, stage: int = 0):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = RangeConv2d(in_base, planes, 1, max_width=max_width).set_stage(in_stage, stage)
        self.bn1 = SwitchableBatchNorm2d(planes, max_width=max_width).set_stage(stage)
        self.conv2 = RangeConv2d(planes, planes, 3, stride=stride, max_width=max_width).set_stage(stage)
        self.bn2 = SwitchableBatchNorm2d(planes, max_width=max_width).set_stage(stage)
        self.conv3 = RangeConv2d(planes, out, 1, max_width=max_width).set_stage(stage)
        self.bn3 = SwitchableBatchNorm2d(out, max_width=max_width).set_stage(stage)
        # The residual sum adds two tensors of one stage: a block entering a new stage projects its input.
        projection = stride != 1 or in_base != out or in_stage != stage
        self.shortcut = Shortcut(in_base, out, stride, max_width, in_stage, stage) if projection else None

    def forward(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x, ctx), ctx))
        y = F.relu(self.bn2(self.conv2(y, ctx), ctx))
        y = self.bn3(self.conv3(y, ctx), ctx)
        identity = x if self.shortcut is None else self.shortcut(x, ctx)
        return F.relu(y + identity)


class ResNet(ParaDiSModel):
    def __init__(
        self,
        *,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        num_classes: int,
        wide_factor: float = 1.2,
        in_chans: int = 3,
        stem_channels: int = 64,
        stage_planes: Sequence[int] = (64, 128, 256, 512),
        imagenet_stem: bool = True,
    ):
        super().__init__(wide_factor)
        w = self.wide_factor
        if imagenet_stem:
            self.stem = RangeConv2d(None, stem_channels, 7, stride=2, padding=3, in_channels=in_chans, max_width=w)
        else:
            self.stem = RangeConv2d(None, stem_channels, 3, stride=1, in_channels=in_chans, max_width=w)
        self.stem_bn = SwitchableBatchNorm2d(stem_channels, max_width=w)
        self.stem.set_stage(0)
        self.stem_bn.set_stage(0)
        self.stem_pool = imagenet_stem
        # Stages are the residual stages (the stem belongs to the first): every residual sum adds two
        # tensors of the same stage, so a per-stage switch keeps one width along each residual path.
        blocks, c, in_stage = [], stem_channels, 0
        for stage, (planes, depth) in enumerate(zip(stage_planes, layers)):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(block(c, planes, stride, w, in_stage, stage))
                c, in_stage = planes * block.expansion, stage
        self.blocks = nn.ModuleList(blocks)
        self.num_stages = len(stage_planes)
        self.feature_base = c
        self.head = RangeLinear(c, None, out_features=num_classes, max_width=w).set_stage(in_stage)
        for m in self.modules():
            # torchvision's initialisation of the last BN of each residual branch is 1 as well; keep it.
            if isinstance(m, SwitchableBatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x, ctx), ctx))
        if self.stem_pool:
            x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        for block in self.blocks:
            x = block(x, ctx)
        return global_avg_pool(x)


def resnet50(*, num_classes: int = 1000, wide_factor: float = 1.2, in_chans: int = 3) -> ResNet:
    """ResNet-50; its [1.0] switch is torchvision's resnet50 (25,557,032 parameters, 4,089 M MACs)."""
    return ResNet(
        block=Bottleneck,
        layers=(3, 4, 6, 3),
        num_classes=num_classes,
        wide_factor=wide_factor,
        in_chans=in_chans,
    )


def resnet_small(*, num_classes: int = 10, wide_factor: float = 1.2, in_chans: int = 1) -> ResNet:
    """A CIFAR-style bottleneck ResNet for 28x28 and 32x32 inputs (Fashion-MNIST, CIFAR)."""
    return ResNet(
        block=Bottleneck,
        layers=(1, 1, 1),
        num_classes=num_classes,
        wide_factor=wide_factor,
        in_chans=in_chans,
        stem_channels=16,
        stage_planes=(16, 32, 64),
        imagenet_stem=False,
    )


def resnet18(*, num_classes: int = 1000, wide_factor: float = 1.2, in_chans: int = 3) -> ResNet:
    """ResNet-18; its [1.0] switch is torchvision's resnet18."""
    return ResNet(
        block=BasicBlock,
        layers=(2, 2, 2, 2),
        num_classes=num_classes,
        wide_factor=wide_factor,
        in_chans=in_chans,
    )

"""MobileNet v1 (Howard et al. 2017) as a ParaDiS network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from paradis.layers import RangeConv2d, RangeLinear, SwitchableBatchNorm2d, SwitchContext, global_avg_pool
from paradis.models.base import ParaDiSModel

# (output channels, stride) of each depthwise-separable block at width 1.0.
IMAGENET_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip
# For 28x28 and 32x32 inputs: every channel count a multiple of 8, so [8x0.125] has whole channels.
SMALL_BLOCKS: tuple[tuple[int, int], ...] = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2))


class DepthwiseSeparable(nn.Module):
    def __init__(self, in_base: int, out_base: int, stride: int, max_width: float, in_stage: int = 0, stage: int = 0):
        super().__init__()
        # The depthwise half works on the input's channels (the previous stage's at a stride-2 block);
        # the pointwise convolution maps them into this block's stage.
        self.dw = RangeConv2d(in_base, in_base, 3, stride=stride, depthwise=True, max_width=max_width)
        self.dw.set_stage(in_stage)
        self.bn1 = SwitchableBatchNorm2d(in_base, max_width=max_width).set_stage(in_stage)
        self.pw = RangeConv2d(in_base, out_base, 1, max_width=max_width).set_stage(in_stage, stage)
        self.bn2 = SwitchableBatchNorm2d(out_base, max_width=max_width).set_stage(stage)

    def forward(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        x = F.relu(self.bn1(self.dw(x, ctx), ctx))
        return F.relu(self.bn2(self.pw(x, ctx), ctx))


class MobileNetV1(ParaDiSModel):
    def __init__(
        self,
        *,
        num_classes: int,
        wide_factor: float = 1.2,
        in_chans: int = 3,
        stem_channels: int = 32,
        stem_stride: int = 2,
        blocks: Sequence[tuple[int, int]] = IMAGENET_BLOCKS,
    ):
        super().__init__(wide_factor)
        w = self.wide_factor
        self.stem = RangeConv2d(None, stem_channels, 3, stride=stem_stride, in_channels=in_chans, max_width=w)
        self.stem_bn = SwitchableBatchNorm2d(stem_channels, max_width=w)
        self.stem.set_stage(0)
        self.stem_bn.set_stage(0)
        # Stages are the resolutions: every stride-2 block after the stem opens a new stage.
        layers, c, stage = [], stem_channels, 0
        for out, stride in blocks:
            new_stage = stage + 1 if stride > 1 else stage
            layers.append(DepthwiseSeparable(c, out, stride, w, in_stage=stage, stage=new_stage))
            c, stage = out, new_stage
        self.blocks = nn.ModuleList(layers)
        self.num_stages = stage + 1
        self.feature_base = c
        self.head = RangeLinear(c, None, out_features=num_classes, max_width=w).set_stage(stage)

    def forward_features(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x, ctx), ctx))
        for block in self.blocks:
            x = block(x, ctx)
        return global_avg_pool(x)


def mobilenet_v1(*, num_classes: int = 1000, wide_factor: float = 1.2, in_chans: int = 3) -> MobileNetV1:
    """MobileNet v1 for 224x224 ImageNet: [1.0] has 4,231,976 parameters and 568.7 M multiply-adds."""
    return MobileNetV1(num_classes=num_classes, wide_factor=wide_factor, in_chans=in_chans)


def mobilenet_v1_small(*, num_classes: int = 10, wide_factor: float = 1.2, in_chans: int = 1) -> MobileNetV1:
    """A MobileNet v1 for 28x28 and 32x32 inputs (Fashion-MNIST, CIFAR)."""
    return MobileNetV1(
        num_classes=num_classes,
        wide_factor=wide_factor,
        in_chans=in_chans,
        stem_channels=16,
        stem_stride=1,
        blocks=SMALL_BLOCKS,
    )

"""WDSR (Yu et al. 2020a) for image super-resolution as a ParaDiS network (the paper's appendix D).

The April 2020 WDSR of https://github.com/ychfan/wdsr: weight normalization and no BN; an entry 3x3
convolution, residual blocks (3x3 widening by the expansion factor, ReLU, 3x3 back), an exit 3x3
convolution to ``scale**2 * channels`` maps, a 5x5 skip convolution of the input, a pixel shuffle, and
the image mean (0.5) subtracted at the input and added back at the output.

As a ParaDiS network the entry, block and exit convolutions are channel-range layers with the weight
norm taken per sub-network (:class:`~paradis.layers.WNRangeConv2d`); the exit convolution fuses the
sub-networks' outputs by summing them, as the classifiers' last layer does. The skip branch, the exit
bias and the image mean do not depend on the switch: they are counted once, on the first sub-network
(device). Pixel shuffle is a permutation, so summing shuffled partial images equals shuffling the sum.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from paradis.layers.context import SwitchContext
from paradis.layers.weightnorm import WNRangeConv2d
from paradis.models.base import ExtractedSwitch, Fusion, ParaDiSModel, SubNetwork, plain_copy
from paradis.switch import SwitchLike


class WDSRBlock(nn.Module):
    """``x + conv2(relu(conv1(x)))``, both weight-normalized (gains 2 and ``res_scale`` as in WDSR)."""

    def __init__(self, channels: int, expansion: int, res_scale: float, max_width: float):
        super().__init__()
        self.conv1 = WNRangeConv2d(channels, channels * expansion, 3, gain=2.0, max_width=max_width)
        self.conv2 = WNRangeConv2d(channels * expansion, channels, 3, gain=res_scale, max_width=max_width)

    def forward(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x, ctx)), ctx)


def bicubic_kernel(scale: int, size: int = 5) -> torch.Tensor:
    """``scale**2 x size x size``: the weights by which bicubic upsampling (``F.interpolate``,
    ``align_corners=False``) computes each of the ``scale**2`` phases from the LR neighbourhood, in
    pixel-shuffle order; a ``size x size`` convolution with them, then a pixel shuffle, is bicubic
    upsampling away from the borders."""
    half = size // 2
    n = 2 * size - 1
    kernel = torch.zeros(scale * scale, size, size)
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            delta = torch.zeros(1, 1, n, n)
            delta[0, 0, n // 2 + dy, n // 2 + dx] = 1.0
            up = F.interpolate(delta, scale_factor=scale, mode="bicubic", align_corners=False)[0, 0]
            centre = scale * (n // 2)
            kernel[:, dy + half, dx + half] = up[centre : centre + scale, centre : centre + scale].flatten()
    return kernel


class Skip(nn.Module):
    """The 5x5 skip convolution of the (mean-subtracted) input, plus the image mean, before the
    pixel shuffle. It does not depend on the switch; extracted, only sub-network 0 has it."""

    def __init__(self, in_chans: int, scale: int, image_mean: float):
        super().__init__()
        self.conv = WNRangeConv2d(None, None, 5, in_channels=in_chans, out_channels=scale * scale * in_chans)
        self.scale, self.image_mean = scale, image_mean

    @torch.no_grad()
    def init_bicubic(self) -> None:
        """Start as bicubic upsampling: each output map reads its own colour channel with the bicubic
        weights of its phase (the gain keeps the kernel's own norm)."""
        k = bicubic_kernel(self.scale)
        v = torch.zeros_like(self.conv.weight_v)
        for c in range(v.shape[1]):
            v[c * k.shape[0] : (c + 1) * k.shape[0], c] = k
        self.conv.weight_v.copy_(v)
        self.conv.weight_g.copy_(v.flatten(1).norm(dim=1))
        self.conv.bias.zero_()

    def forward(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        return self.conv(x - self.image_mean, ctx) + self.image_mean


class WDSR(ParaDiSModel):
    """WDSR: ``model(lr, switch)`` is the super-resolved image, ``scale`` times larger.

    ``feature_base`` is the body width at ``[1.0]`` (the features distilled by ``beta`` are the body's
    last maps, zero-padded to that width).
    """

    def __init__(
        self,
        *,
        channels: int = 64,
        blocks: int = 8,
        expansion: int = 4,
        scale: int = 2,
        in_chans: int = 3,
        image_mean: float = 0.5,
        wide_factor: float = 1.0,
        init: Literal["wdsr", "bicubic"] = "wdsr",
    ):
        super().__init__(wide_factor)
        for name, value in (("channels", channels), ("blocks", blocks), ("expansion", expansion), ("scale", scale)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"WDSR {name} {value!r} must be a positive integer")
        w = self.wide_factor
        self.scale, self.in_chans, self.image_mean = scale, in_chans, float(image_mean)
        out_maps = scale * scale * in_chans
        self.entry = WNRangeConv2d(None, channels, 3, in_channels=in_chans, max_width=w)
        self.blocks = nn.ModuleList(WDSRBlock(channels, expansion, 1 / math.sqrt(blocks), w) for _ in range(blocks))
        self.head = WNRangeConv2d(channels, None, 3, out_channels=out_maps, max_width=w)
        self.skip = Skip(in_chans, scale, self.image_mean)
        self.feature_base = channels
        if init == "bicubic":
            # Start from the bicubic baseline: the skip branch is bicubic upsampling and the body's
            # exit gain is small, so short trainings spend their steps on improving on bicubic.
            self.skip.init_bicubic()
            with torch.no_grad():
                self.head.weight_g.fill_(0.1)
        elif init != "wdsr":
            raise ValueError(f"WDSR init {init!r} must be 'wdsr' or 'bicubic'")

    def forward_features(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        y = self.entry(x - self.image_mean, ctx)
        for block in self.blocks:
            y = block(y, ctx)
        return y

    def output_and_features(self, x: torch.Tensor, ctx: SwitchContext | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (partial, when extracted) high-resolution image and the body's last feature maps; WDSR has
        no BN, so ``model(x, switch, bn_update=...)`` ignores ``bn_update``."""
        features = self.forward_features(x, ctx)
        y = self.head(features, ctx)
        if self.skip.conv is not None:  # None on the extracted sub-networks other than the first
            y = y + self.skip(x, ctx)
        return F.pixel_shuffle(y, self.scale), features

    def pad_features(self, features: torch.Tensor) -> torch.Tensor:
        missing = self.feature_base - features.shape[1]
        return F.pad(features, (0, 0, 0, 0, 0, missing)) if missing > 0 else features

    def extract(self, switch: SwitchLike, *, missing_stats_ok: bool = False) -> ExtractedSwitch:
        """Plain sub-networks, each giving a partial image; their sum is the fused image (the skip
        branch, exit bias and image mean belong to sub-network 0)."""
        s = self.resolve(switch)
        subnets = [SubNetwork(plain_copy(self, s, i, missing_stats_ok)) for i in range(len(s))]
        return ExtractedSwitch(s, subnets, Fusion(None))


def wdsr(*, wide_factor: float = 1.0, in_chans: int = 3, scale: int = 2, init: str = "wdsr") -> WDSR:
    """WDSR as in the paper's appendix D: 64 channels, 8 residual blocks, expansion 4, x2, with
    WDSR's own initialisation; the output image has the input's channels."""
    return WDSR(channels=64, blocks=8, expansion=4, scale=scale, in_chans=in_chans, wide_factor=wide_factor, init=init)


def wdsr_small(*, wide_factor: float = 1.0, in_chans: int = 3, scale: int = 2, init: str = "bicubic") -> WDSR:
    """A reduced WDSR for short CPU runs: 32 channels, 4 residual blocks, expansion 4, x2; it starts
    from bicubic upsampling (``init="bicubic"``; ``"wdsr"`` for WDSR's own initialisation)."""
    return WDSR(channels=32, blocks=4, expansion=4, scale=scale, in_chans=in_chans, wide_factor=wide_factor, init=init)

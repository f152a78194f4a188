"""Convolution and linear layers that compute only on a switch's channel ranges."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from paradis.layers.context import SwitchContext
from paradis.layers.functional import depthwise_conv2d, range_conv2d, range_linear
from paradis.switch import Switch, channel_index, exact_width


def max_channels(base_channels: int, max_width: float) -> int:
    """Channels a layer allocates so that every switch up to ``max_width`` fits."""
    return channel_index(exact_width(max_width), base_channels)


class RangeLayer(nn.Module):
    """Base of layers whose channel count scales with the switch.

    ``in_base`` and ``out_base`` are the channel counts at width 1.0; ``None`` means the dimension
    does not scale (the network's input channels, the classes of a classifier).
    """

    in_base: int | None
    out_base: int | None
    # The model stage of the input and output channels (see paradis.switch): a switch with per-stage
    # widths takes its ranges from them. Models set them at construction with set_stage.
    in_stage: int | None = None
    out_stage: int | None = None
    # How single widths become channels ("paradis": the shared cumulative rule; "us-nets": US-Nets'
    # make_divisible). The model sets it on every layer (ParaDiSModel.set_rounding).
    rounding: str = "paradis"

    def set_stage(self, in_stage: int, out_stage: int | None = None) -> RangeLayer:
        """Place the layer's input channels in ``in_stage`` and its output channels in ``out_stage``
        (default: the same stage); dimensions that do not scale keep no stage. Returns the layer."""
        self.in_stage = None if self.in_base is None else in_stage
        self.out_stage = None if self.out_base is None else (in_stage if out_stage is None else out_stage)
        return self

    def base_channels(self) -> list[int]:
        return [c for c in (self.in_base, self.out_base) if c is not None]

    def staged_channels(self) -> list[tuple[int, int | None]]:
        """``(base channels, stage)`` of each dimension that scales with the switch."""
        dims = ((self.in_base, self.in_stage), (self.out_base, self.out_stage))
        return [(c, s) for c, s in dims if c is not None]

    def in_ranges(self, switch: Switch):
        return None if self.in_base is None else switch.channel_ranges(self.in_base, self.in_stage, self.rounding)

    def out_ranges(self, switch: Switch):
        return None if self.out_base is None else switch.channel_ranges(self.out_base, self.out_stage, self.rounding)

    def plain(self, switch: Switch, index: int) -> nn.Module:  # pragma: no cover - interface
        """A plain torch module holding only sub-network ``index``'s part of this layer."""
        raise NotImplementedError


class PlainConv2d(nn.Conv2d):
    """``nn.Conv2d`` that accepts (and ignores) the switch context of the module tree it sits in."""

    def forward(self, x: torch.Tensor, ctx: SwitchContext | None = None) -> torch.Tensor:
        return super().forward(x)


class PlainLinear(nn.Linear):
    def forward(self, x: torch.Tensor, ctx: SwitchContext | None = None) -> torch.Tensor:
        return super().forward(x)


class RangeConv2d(RangeLayer):
    """A 2-D convolution whose sub-networks never mix: block diagonal over the switch's ranges.

    ``in_base=None`` makes every sub-network read all ``in_channels`` (the network input).
    ``depthwise=True`` gives a depthwise convolution (``in_base == out_base``).
    """

    def __init__(
        self,
        in_base: int | None,
        out_base: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        bias: bool = False,
        depthwise: bool = False,
        in_channels: int | None = None,
        max_width: float = 1.0,
    ):
        super().__init__()
        if in_base is None and in_channels is None:
            raise ValueError("a convolution reading the network input needs in_channels")
        if depthwise and in_base != out_base:
            raise ValueError(f"a depthwise convolution needs in_base == out_base, got {in_base}, {out_base}")
        self.in_base, self.out_base = in_base, out_base
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.padding = (kernel_size - 1) // 2 * dilation if padding is None else padding
        self.depthwise = depthwise
        self.max_width = max_width
        n_out = max_channels(out_base, max_width)
        n_in = 1 if depthwise else (in_channels if in_base is None else max_channels(in_base, max_width))
        self.weight = nn.Parameter(torch.empty(n_out, n_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def extra_repr(self) -> str:
        kind = "depthwise, " if self.depthwise else ""
        return (
            f"{kind}in_base={self.in_base}, out_base={self.out_base}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, max={tuple(self.weight.shape[:2])}"
        )

    def forward(self, x: torch.Tensor, ctx: SwitchContext) -> torch.Tensor:
        if self.depthwise:
            return depthwise_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return range_conv2d(
            x,
            self.weight,
            self.bias,
            self.in_ranges(ctx.switch),
            self.out_ranges(ctx.switch),
            self.stride,
            self.padding,
            self.dilation,
            grouped=ctx.grouped,
        )

    def plain(self, switch: Switch, index: int) -> nn.Module:
        o0, o1 = self.out_ranges(switch)[index]
        if self.depthwise:
            i0, i1, groups = 0, 1, o1 - o0
        elif self.in_base is None:
            i0, i1, groups = 0, self.weight.shape[1], 1
        else:
            i0, i1 = self.in_ranges(switch)[index]
            groups = 1
        in_channels = (o1 - o0) if self.depthwise else (i1 - i0)
        conv = PlainConv2d(
            in_channels,
            o1 - o0,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=groups,
            bias=self.bias is not None,
        )
        with torch.no_grad():
            conv.weight.copy_(self.weight[o0:o1, i0:i1])
            if self.bias is not None:
                conv.bias.copy_(self.bias[o0:o1])
        return conv


class RangeLinear(RangeLayer):
    """A linear layer over the switch's feature ranges.

    With ``out_base=None`` it is the fusing classifier: each sub-network's features give a partial
    output over all ``out_features``; the partial outputs are summed and the bias added once.
    """

    def __init__(
        self,
        in_base: int,
        out_base: int | None,
        *,
        out_features: int | None = None,
        bias: bool = True,
        max_width: float = 1.0,
    ):
        super().__init__()
        if out_base is None and out_features is None:
            raise ValueError("a fusing classifier needs out_features")
        self.in_base, self.out_base = in_base, out_base
        self.max_width = max_width
        n_in = max_channels(in_base, max_width)
        n_out = out_features if out_base is None else max_channels(out_base, max_width)
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.empty(n_out)) if bias else None
        # nn.Linear's initialisation, with the fan-in of the [1.0] network so that [1.0] starts as an
        # ordinary network would.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_base)
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"in_base={self.in_base}, out_base={self.out_base}, max={tuple(self.weight.shape)}"

    def forward(self, x: torch.Tensor, ctx: SwitchContext) -> torch.Tensor:
        return range_linear(
            x, self.weight, self.bias, self.in_ranges(ctx.switch), self.out_ranges(ctx.switch), grouped=ctx.grouped
        )

    def plain(self, switch: Switch, index: int) -> nn.Module:
        i0, i1 = self.in_ranges(switch)[index]
        if self.out_base is None:
            # A partial output: the shared bias belongs to the fusion step, counted once.
            o0, o1, with_bias = 0, self.weight.shape[0], False
        else:
            (o0, o1), with_bias = self.out_ranges(switch)[index], self.bias is not None
        lin = PlainLinear(i1 - i0, o1 - o0, bias=with_bias)
        with torch.no_grad():
            lin.weight.copy_(self.weight[o0:o1, i0:i1])
            if with_bias:
                lin.bias.copy_(self.bias[o0:o1])
        return lin


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, 1).flatten(1)

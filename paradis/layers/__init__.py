"""Channel-range layers: each computes only on the channel ranges of the switch it is given."""

from paradis.layers.context import BNUpdate, SwitchContext
from paradis.layers.conv import (
    PlainConv2d,
    PlainLinear,
    RangeConv2d,
    RangeLayer,
    RangeLinear,
    global_avg_pool,
    max_channels,
)
from paradis.layers.functional import depthwise_conv2d, range_conv2d, range_linear
from paradis.layers.norm import BNStatisticsMissing, PlainBatchNorm2d, SwitchableBatchNorm2d
from paradis.layers.weightnorm import WNRangeConv2d

__all__ = [
    "BNStatisticsMissing",
    "BNUpdate",
    "PlainBatchNorm2d",
    "PlainConv2d",
    "PlainLinear",
    "RangeConv2d",
    "RangeLayer",
    "RangeLinear",
    "SwitchContext",
    "SwitchableBatchNorm2d",
    "WNRangeConv2d",
    "depthwise_conv2d",
    "global_avg_pool",
    "max_channels",
    "range_conv2d",
    "range_linear",
]

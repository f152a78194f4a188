"""The one place where switches become slices of weights.

Activations of a switch are stored as one tensor whose channels are the sub-networks' ranges side by
side, ``[0, n)`` of the layer. Channel-wise operations (BN, ReLU, depthwise convolution, pooling,
residual additions) therefore run on the whole tensor at once and are exactly per-sub-network.
Operations that mix channels (convolution, linear) must not mix sub-networks: they are block
diagonal, one dense operation per sub-network on its own slice of the weights, never a masked
full-width pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Ranges = Sequence[tuple[int, int]]


def range_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_ranges: Ranges | None,
    out_ranges: Ranges,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """Block-diagonal convolution: sub-network ``i`` maps its input range to its output range.

    ``in_ranges=None`` means every sub-network reads all input channels (the network input).
    """
    n_out = out_ranges[-1][1]
    if in_ranges is None:
        # Every sub-network reads the whole input: the blocks stack into one dense convolution.
        b = bias[:n_out] if bias is not None else None
        return F.conv2d(x, weight[:n_out], b, stride, padding, dilation)
    outs = []
    for (i0, i1), (o0, o1) in zip(in_ranges, out_ranges):
        b = bias[o0:o1] if bias is not None else None
        xi = x if len(in_ranges) == 1 and i0 == 0 and i1 == x.shape[1] else x[:, i0:i1]
        outs.append(F.conv2d(xi, weight[o0:o1, i0:i1], b, stride, padding, dilation))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


def depthwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """Depthwise convolution is per channel, hence already per sub-network: one call."""
    n = x.shape[1]
    b = bias[:n] if bias is not None else None
    return F.conv2d(x, weight[:n], b, stride, padding, dilation, groups=n)


def range_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_ranges: Ranges,
    out_ranges: Ranges | None,
) -> torch.Tensor:
    """Block-diagonal linear layer, or, with ``out_ranges=None``, the fusing classifier.

    As a classifier every sub-network maps its own features to a partial output over all outputs;
    fusion sums the partial outputs and adds the shared bias once, which is one dense product over
    the concatenated features.
    """
    n_in = in_ranges[-1][1]
    if out_ranges is None:
        return F.linear(x[:, :n_in], weight[:, :n_in], bias)
    outs = []
    for (i0, i1), (o0, o1) in zip(in_ranges, out_ranges):
        b = bias[o0:o1] if bias is not None else None
        outs.append(F.linear(x[:, i0:i1], weight[o0:o1, i0:i1], b))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

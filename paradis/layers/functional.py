"""The one place where switches become slices of weights.

Activations of a switch are stored as one tensor whose channels are the sub-networks' ranges side by
side, ``[0, n)`` of the layer. Channel-wise operations (BN, ReLU, depthwise convolution, pooling,
residual additions) therefore run on the whole tensor at once and are exactly per-sub-network.
Operations that mix channels (convolution, linear) must not mix sub-networks: they are block
diagonal, one dense operation per sub-network on its own slice of the weights, never a masked
full-width pass. When the sub-networks of a layer have equal widths, the blocks run as one grouped
convolution (or one batched matrix product): the same arithmetic as the loop, in one kernel call
instead of ``k`` calls and a concatenation. Unequal widths fall back to the loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Ranges = Sequence[tuple[int, int]]


def equal_blocks(in_ranges: Ranges, out_ranges: Ranges) -> bool:
    """Whether every sub-network has the same input width and the same output width (and there are
    several), so that the blocks stack into one grouped operation."""
    if len(out_ranges) < 2:
        return False
    wi, wo = in_ranges[0][1] - in_ranges[0][0], out_ranges[0][1] - out_ranges[0][0]
    return all(b - a == wi for a, b in in_ranges) and all(b - a == wo for a, b in out_ranges)


def _diagonal_blocks(weight: torch.Tensor, in_ranges: Ranges, out_ranges: Ranges) -> torch.Tensor:
    """The diagonal blocks of ``weight`` stacked along the output dimension (a grouped weight)."""
    return torch.cat([weight[o0:o1, i0:i1] for (i0, i1), (o0, o1) in zip(in_ranges, out_ranges)])


def range_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_ranges: Ranges | None,
    out_ranges: Ranges,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    *,
    grouped: bool = True,
) -> torch.Tensor:
    """Block-diagonal convolution: sub-network ``i`` maps its input range to its output range.

    ``in_ranges=None`` means every sub-network reads all input channels (the network input).
    ``grouped=False`` forces the per-sub-network loop (the reference path).
    """
    n_out = out_ranges[-1][1]
    if in_ranges is None:
        # Every sub-network reads the whole input: the blocks stack into one dense convolution.
        b = bias[:n_out] if bias is not None else None
        return F.conv2d(x, weight[:n_out], b, stride, padding, dilation)
    if grouped and equal_blocks(in_ranges, out_ranges):
        n_in = in_ranges[-1][1]
        b = bias[:n_out] if bias is not None else None
        xi = x if x.shape[1] == n_in else x[:, :n_in]
        if xi.device.type == "cpu":
            # oneDNN's grouped convolution is many times slower on NCHW than on NHWC when groups are
            # narrow (benchmarks/switch_execution.py); later layers then stay NHWC, so this copies once
            xi = xi.contiguous(memory_format=torch.channels_last)
        w = _diagonal_blocks(weight, in_ranges, out_ranges)
        return F.conv2d(xi, w, b, stride, padding, dilation, groups=len(out_ranges))
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
    *,
    grouped: bool = True,
) -> torch.Tensor:
    """Block-diagonal linear layer, or, with ``out_ranges=None``, the fusing classifier.

    As a classifier every sub-network maps its own features to a partial output over all outputs;
    fusion sums the partial outputs and adds the shared bias once, which is one dense product over
    the concatenated features.
    """
    n_in = in_ranges[-1][1]
    if out_ranges is None:
        return F.linear(x[:, :n_in], weight[:, :n_in], bias)
    if grouped and equal_blocks(in_ranges, out_ranges):
        k = len(out_ranges)
        w = _diagonal_blocks(weight, in_ranges, out_ranges).unflatten(0, (k, -1))  # (k, out/k, in/k)
        xs = x[:, :n_in].unflatten(1, (k, -1)).transpose(0, 1)  # (k, batch, in/k)
        out = torch.bmm(xs, w.transpose(1, 2)).transpose(0, 1).flatten(1)
        n_out = out_ranges[-1][1]
        return out if bias is None else out + bias[:n_out]
    outs = []
    for (i0, i1), (o0, o1) in zip(in_ranges, out_ranges):
        b = bias[o0:o1] if bias is not None else None
        outs.append(F.linear(x[:, i0:i1], weight[o0:o1, i0:i1], b))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

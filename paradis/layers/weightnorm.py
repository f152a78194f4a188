"""Weight-normalized convolution over a switch's channel ranges (Salimans & Kingma 2016, as in WDSR).

An ordinary weight-normalized convolution has the weight ``w[o] = g[o] * v[o] / ||v[o]||``, the norm of
output channel ``o`` taken over all its inputs. Here the norm is taken over each sub-network's own
slice of ``v`` (its input range), so that ``[1.0]`` is exactly an ordinary weight-normalized
convolution on the first ``C`` channels and every sub-network is an ordinary weight-normalized
convolution of its width, whatever the other sub-networks' weights are.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from paradis.layers.context import SwitchContext
from paradis.layers.conv import PlainConv2d, RangeLayer, max_channels
from paradis.layers.functional import range_conv2d
from paradis.switch import Switch


class WNRangeConv2d(RangeLayer):
    """A weight-normalized convolution, block diagonal over the switch's ranges.

    - ``in_base=None``: every sub-network reads all ``in_channels`` (the network input).
    - ``out_base=None``: the fusing output layer; each sub-network maps its own input range to a
      partial output over all ``out_channels``, the partial outputs are summed and the bias added
      once (by the first sub-network when extracted).
    - both ``None``: a layer that does not depend on the switch; it runs once, on the first device.

    Parameters are ``weight_v`` (direction), ``weight_g`` (one gain per output channel) and ``bias``,
    as in ``torch.nn.utils.weight_norm`` with ``dim=0``.
    """

    def __init__(
        self,
        in_base: int | None,
        out_base: int | None,
        kernel_size: int,
        *,
        in_channels: int | None = None,
        out_channels: int | None = None,
        bias: bool = True,
        gain: float = 1.0,
        max_width: float = 1.0,
    ):
        super().__init__()
        if in_base is None and in_channels is None:
            raise ValueError("a convolution reading the network input needs in_channels")
        if out_base is None and out_channels is None:
            raise ValueError("a fusing output convolution needs out_channels")
        self.in_base, self.out_base = in_base, out_base
        self.kernel_size, self.padding = kernel_size, (kernel_size - 1) // 2
        self.max_width = max_width
        n_out = out_channels if out_base is None else max_channels(out_base, max_width)
        n_in = in_channels if in_base is None else max_channels(in_base, max_width)
        self.weight_v = nn.Parameter(torch.empty(n_out, n_in, kernel_size, kernel_size))
        self.weight_g = nn.Parameter(torch.full((n_out,), float(gain)))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        # nn.Conv2d's initialisation of the direction; its scale does not matter under the norm.
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))

    def extra_repr(self) -> str:
        return (
            f"in_base={self.in_base}, out_base={self.out_base}, kernel_size={self.kernel_size}, "
            f"max={tuple(self.weight_v.shape[:2])}, weight_norm"
        )

    # the normalized weight -----------------------------------------------------------------------
    def _ranges(self, switch: Switch) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Per sub-network (input range, output range); a dimension that does not scale is whole."""
        k = len(switch)
        n_out, n_in = self.weight_v.shape[:2]
        ins = self.in_ranges(switch) or [(0, n_in)] * k
        outs = self.out_ranges(switch) or [(0, n_out)] * k
        return list(ins), list(outs)

    def normalized_weight(self, switch: Switch) -> torch.Tensor:
        """``g * v / ||v||`` over the channels ``switch`` uses, each block normed on its own slice.

        Blocks that no sub-network reads (off the diagonal) are zero. One elementwise product with a
        block-diagonal scale matrix: differentiable, no per-block copies of the weight.
        """
        ins, outs = self._ranges(switch)
        n_out, n_in = outs[-1][1], ins[-1][1]
        v = self.weight_v[:n_out, :n_in]
        g = self.weight_g[:n_out]
        sq = v.pow(2).sum((2, 3))  # (n_out, n_in): squared norm of each (output, input) kernel
        if self.in_base is None:
            # Every sub-network reads every input: the ordinary weight norm, row by row.
            scale = (g / sq.sum(1).sqrt()).unsqueeze(1).expand(n_out, n_in)
        elif self.out_base is None:
            # Fusing output: sub-network i owns the columns of its input range, for all outputs.
            scale = torch.cat(
                [(g / sq[:, i0:i1].sum(1).sqrt()).unsqueeze(1).expand(n_out, i1 - i0) for i0, i1 in ins], dim=1
            )
        else:
            scale = torch.block_diag(
                *[
                    (g[o0:o1] / sq[o0:o1, i0:i1].sum(1).sqrt()).unsqueeze(1).expand(o1 - o0, i1 - i0)
                    for (i0, i1), (o0, o1) in zip(ins, outs)
                ]
            )
        return v * scale[:, :, None, None]

    # forward and extraction ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, ctx: SwitchContext) -> torch.Tensor:
        switch = ctx.switch
        w = self.normalized_weight(switch)
        if self.out_base is None:
            # Partial outputs summed = one dense convolution over the concatenated input ranges; the
            # bias is added once.
            n_in = w.shape[1]
            xi = x if x.shape[1] == n_in else x[:, :n_in]
            return F.conv2d(xi, w, self.bias, 1, self.padding)
        ins = None if self.in_base is None else self.in_ranges(switch)
        return range_conv2d(x, w, self.bias, ins, self.out_ranges(switch), 1, self.padding, grouped=ctx.grouped)

    def plain(self, switch: Switch, index: int) -> nn.Module | None:
        """Sub-network ``index``'s part as an ordinary convolution holding the normalized weight.

        The bias of a fusing layer is added once, by sub-network 0; a layer that does not depend on
        the switch exists on sub-network 0 only (``None`` elsewhere).
        """
        fusing = self.out_base is None
        if fusing and self.in_base is None and index > 0:
            return None
        ins, outs = self._ranges(switch)
        (i0, i1), (o0, o1) = ins[index], outs[index]
        with_bias = self.bias is not None and (not fusing or index == 0)
        conv = PlainConv2d(i1 - i0, o1 - o0, self.kernel_size, padding=self.padding, bias=with_bias)
        with torch.no_grad():
            conv.weight.copy_(self.normalized_weight(switch)[o0:o1, i0:i1])
            if with_bias:
                conv.bias.copy_(self.bias[o0:o1])
        return conv

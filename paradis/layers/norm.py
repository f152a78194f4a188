"""Switchable batch normalization: shared affine parameters, running statistics private per switch."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from paradis.layers.context import SwitchContext
from paradis.layers.conv import RangeLayer, max_channels
from paradis.switch import Switch

_STAT_NAMES = ("running_mean__", "running_var__", "num_batches__")


class BNStatisticsMissing(RuntimeError):
    """Evaluation of a switch whose BN statistics were never computed (neither trained nor calibrated)."""


class PlainBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor, ctx: SwitchContext | None = None) -> torch.Tensor:
        return super().forward(x)


class SwitchableBatchNorm2d(RangeLayer):
    """BatchNorm2d over the switch's channels ``[0, n)``.

    ``weight`` and ``bias`` are shared by all switches (sliced). Each switch has its own running
    statistics, stored as buffers ``running_mean__<key>``, ``running_var__<key>`` and
    ``num_batches__<key>`` that appear on first use (training or calibration) and travel with the
    state dict. A switch without statistics is never normalized with another switch's.
    """

    def __init__(self, base: int, *, max_width: float = 1.0, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.in_base = self.out_base = base
        self.max_width = max_width
        self.eps, self.momentum = eps, momentum
        n = max_channels(base, max_width)
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))

    def extra_repr(self) -> str:
        return f"base={self.out_base}, max={self.weight.shape[0]}, switches={self.stat_keys()}"

    # statistics -------------------------------------------------------------------------------
    def stat_keys(self) -> list[str]:
        return sorted(k[len("running_mean__") :] for k in self._buffers if k.startswith("running_mean__"))

    def has_stats(self, switch: Switch) -> bool:
        return f"running_mean__{switch.key}" in self._buffers

    def stats(self, switch: Switch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(running_mean, running_var, num_batches)`` of ``switch``; raises if it has none."""
        key = switch.key
        if f"running_mean__{key}" not in self._buffers:
            known = ", ".join(str(Switch.from_key(k)) for k in self.stat_keys()) or "none"
            raise BNStatisticsMissing(
                f"switch {switch} has no BN statistics (never trained or calibrated; switches with "
                f"statistics: {known}); run paradis.calibrate_bn(model, {str(switch)!r}, batches) first"
            )
        return (
            self._buffers[f"running_mean__{key}"],
            self._buffers[f"running_var__{key}"],
            self._buffers[f"num_batches__{key}"],
        )

    def reset_stats(self, switch: Switch) -> None:
        """Start ``switch``'s statistics afresh (mean 0, variance 1, no batches)."""
        n = switch.channels(self.out_base, self.out_stage, self.rounding)
        device = self.weight.device
        key = switch.key
        dtype = self.weight.dtype  # a model moved to float64 (or half) keeps its statistics in kind
        self.register_buffer(f"running_mean__{key}", torch.zeros(n, device=device, dtype=dtype))
        self.register_buffer(f"running_var__{key}", torch.ones(n, device=device, dtype=dtype))
        self.register_buffer(f"num_batches__{key}", torch.zeros((), dtype=torch.long, device=device))

    def drop_stats(self, switch: Switch) -> None:
        for name in _STAT_NAMES:
            self._buffers.pop(f"{name}{switch.key}", None)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        # Statistics buffers exist only for the switches that had them: create the ones being loaded.
        for full_key, value in state_dict.items():
            if not full_key.startswith(prefix):
                continue
            name = full_key[len(prefix) :]
            if name.startswith(_STAT_NAMES) and "." not in name and name not in self._buffers:
                self.register_buffer(name, torch.empty_like(value, device=self.weight.device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    # forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, ctx: SwitchContext) -> torch.Tensor:
        n = x.shape[1]
        weight, bias = self.weight[:n], self.bias[:n]
        if self.training and ctx.bn_update == "none":
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        if self.training and not self.has_stats(ctx.switch):
            self.reset_stats(ctx.switch)
        mean, var, count = self.stats(ctx.switch)
        if mean.shape[0] != n:
            raise RuntimeError(f"BN statistics of switch {ctx.switch} have {mean.shape[0]} channels, input has {n}")
        if not self.training:
            return F.batch_norm(x, mean, var, weight, bias, False, 0.0, self.eps)
        cumulative = ctx.bn_update == "cumulative"
        momentum = 1.0 / float(count.item() + 1) if cumulative else self.momentum
        count.add_(1)
        return F.batch_norm(x, mean, var, weight, bias, True, momentum, self.eps)

    def plain(self, switch: Switch, index: int, *, missing_ok: bool = False) -> nn.Module:
        o0, o1 = self.out_ranges(switch)[index]
        bn = PlainBatchNorm2d(o1 - o0, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            bn.weight.copy_(self.weight[o0:o1])
            bn.bias.copy_(self.bias[o0:o1])
            if self.has_stats(switch) or not missing_ok:
                mean, var, count = self.stats(switch)
                bn.running_mean.copy_(mean[o0:o1])
                bn.running_var.copy_(var[o0:o1])
                bn.num_batches_tracked.copy_(count)
        return bn

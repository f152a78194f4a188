"""Cost of a switch, in total and per sub-network (per device), counted from the operations run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from paradis.models.base import ParaDiSModel
from paradis.switch import Switch, SwitchLike


@dataclass(frozen=True)
class SwitchProfile:
    """Multiply-adds and parameters of a switch; ``device_*`` lists one entry per sub-network."""

    switch: Switch
    input_size: tuple[int, ...]
    macs: int
    params: int
    device_macs: tuple[int, ...]
    device_params: tuple[int, ...]
    fusion_params: int

    @property
    def max_device_macs(self) -> int:
        """What the paper's "distributed" curve plots: the cost of the busiest device."""
        return max(self.device_macs)

    @property
    def max_device_params(self) -> int:
        return max(self.device_params)

    def as_dict(self) -> dict:
        return {
            "switch": str(self.switch),
            "macs": self.macs,
            "params": self.params,
            "max_device_macs": self.max_device_macs,
            "device_macs": list(self.device_macs),
            "device_params": list(self.device_params),
        }


def count_macs(fn, *args) -> int:
    """Multiply-adds of the convolutions and matrix products ``fn(*args)`` actually runs."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn(*args)
    return counter.get_total_flops() // 2


@torch.no_grad()
def profile(model: ParaDiSModel, switch: SwitchLike, input_size: Sequence[int]) -> SwitchProfile:
    """Count ``switch``'s multiply-adds (one image of ``input_size``, e.g. ``(3, 224, 224)``) and
    parameters, in total and for each sub-network as extracted for its own device."""
    s = model.resolve(switch)
    extracted = model.extract(s, missing_stats_ok=True)
    device = next(model.parameters()).device
    x = torch.zeros(1, *input_size, device=device)
    device_macs = tuple(count_macs(net, x) for net in extracted.subnets)
    device_params = tuple(sum(p.numel() for p in net.parameters()) for net in extracted.subnets)
    fusion_params = sum(p.numel() for p in extracted.fusion.parameters())
    return SwitchProfile(
        switch=s,
        input_size=tuple(int(v) for v in input_size),
        macs=sum(device_macs),
        params=sum(device_params) + fusion_params,
        device_macs=device_macs,
        device_params=device_params,
        fusion_params=fusion_params,
    )


def format_profiles(profiles: Sequence[SwitchProfile]) -> str:
    """A Markdown table: one row per switch, multiply-adds in millions."""
    lines = [
        "| switch | devices | MMACs | max MMACs per device | params (M) | max params per device (M) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in profiles:
        lines.append(
            f"| {p.switch} | {len(p.switch)} | {p.macs / 1e6:.2f} | {p.max_device_macs / 1e6:.2f} | "
            f"{p.params / 1e6:.3f} | {p.max_device_params / 1e6:.3f} |"
        )
    return "\n".join(lines)

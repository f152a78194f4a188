"""What every ParaDiS model shares: switch resolution, the fused forward pass and extraction."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from paradis.layers.context import BNUpdate, SwitchContext
from paradis.layers.conv import RangeLayer
from paradis.layers.norm import SwitchableBatchNorm2d
from paradis.switch import ROUNDINGS, Switch, SwitchLike, parse_switch


class ParaDiSModel(nn.Module):
    """A network whose switches are chosen per call: ``model(x, switch="[0.5, 0.5]")``.

    Subclasses build their layers from :mod:`paradis.layers` and implement
    :meth:`forward_features` (input to the features before the final layer) and set
    ``self.head`` (the fusing classifier) and ``self.feature_base`` (feature channels at width 1.0).
    """

    head: RangeLayer
    feature_base: int
    # Stages a switch may give per-stage widths for (resolution or residual stages); subclasses set
    # it and place every range layer in a stage with RangeLayer.set_stage.
    num_stages: int = 1

    def __init__(self, wide_factor: float):
        super().__init__()
        if not isinstance(wide_factor, (int, float)) or isinstance(wide_factor, bool) or wide_factor < 1.0:
            raise ValueError(f"wide_factor {wide_factor!r} must be a number >= 1.0")
        self.wide_factor = float(wide_factor)
        self.rounding = "paradis"
        self._resolved: dict[Switch, Switch] = {}

    def set_rounding(self, rounding: str) -> ParaDiSModel:
        """How single widths become channels in every layer: ``"paradis"`` (the shared cumulative
        rule, ``floor(f * C + 1/2)``) or ``"us-nets"`` (US-Nets' ``make_divisible(C * w, 8)``, as the
        US and slimmable baselines' authors built them; lists of widths keep the shared rule)."""
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding {rounding!r}: one of {', '.join(ROUNDINGS)}")
        self.rounding = rounding
        for _, layer in self.range_layers():
            layer.rounding = rounding
        self._resolved.clear()
        return self

    # switches ---------------------------------------------------------------------------------
    def range_layers(self) -> Iterator[tuple[str, RangeLayer]]:
        for name, module in self.named_modules():
            if isinstance(module, RangeLayer):
                yield name, module

    def bn_layers(self) -> Iterator[SwitchableBatchNorm2d]:
        for module in self.modules():
            if isinstance(module, SwitchableBatchNorm2d):
                yield module

    def resolve(self, switch: SwitchLike) -> Switch:
        """Parse ``switch`` and check it fits this model; the error names the switch and layer."""
        parsed = parse_switch(switch)
        if parsed not in self._resolved:
            layers = [
                (name, base, stage) for name, layer in self.range_layers() for base, stage in layer.staged_channels()
            ]
            parsed.check(max_width=self.wide_factor, layers=layers, num_stages=self.num_stages, rounding=self.rounding)
            self._resolved[parsed] = parsed
        return parsed

    def has_bn_stats(self, switch: SwitchLike) -> bool:
        s = self.resolve(switch)
        return all(bn.has_stats(s) for bn in self.bn_layers())

    def bn_switches(self) -> list[Switch]:
        """Switches that have BN statistics in every BN layer."""
        layers = list(self.bn_layers())
        if not layers:
            return []
        keys = set(layers[0].stat_keys())
        for bn in layers[1:]:
            keys &= set(bn.stat_keys())
        return sorted((Switch.from_key(k) for k in keys), key=lambda s: (-s.total, -s.widths[0], len(s)))

    # forward ----------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor, ctx: SwitchContext | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        x: torch.Tensor,
        switch: SwitchLike = "[1.0]",
        *,
        return_features: bool = False,
        bn_update: BNUpdate = "momentum",
        grouped: bool = True,
    ):
        """The fused output of ``switch``; with ``return_features`` also its feature vector before
        the final layer, zero-padded to the length of the ``[1.0]`` features (footnote 3).
        ``grouped=False`` runs the sub-networks of every layer one after another (reference path)."""
        ctx = SwitchContext(self.resolve(switch), bn_update, grouped)
        out, features = self.output_and_features(x, ctx)
        if not return_features:
            return out
        return out, self.pad_features(features)

    def output_and_features(self, x: torch.Tensor, ctx: SwitchContext | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (fused, or partial when extracted) output and the features it was computed from."""
        features = self.forward_features(x, ctx)
        return self.head(features, ctx), features

    def pad_features(self, features: torch.Tensor) -> torch.Tensor:
        missing = self.feature_base - features.shape[1]
        return F.pad(features, (0, missing)) if missing > 0 else features

    # extraction -------------------------------------------------------------------------------
    def extract(self, switch: SwitchLike, *, missing_stats_ok: bool = False) -> ExtractedSwitch:
        """The standalone sub-networks of ``switch`` and the fusion step, as plain torch modules.

        Each sub-network holds only its own slice of the weights and the switch's BN statistics.
        """
        s = self.resolve(switch)
        subnets = [SubNetwork(plain_copy(self, s, i, missing_stats_ok)) for i in range(len(s))]
        bias = getattr(self.head, "bias", None)
        return ExtractedSwitch(s, subnets, Fusion(None if bias is None else bias.detach().clone()))


def plain_copy(model: ParaDiSModel, switch: Switch, index: int, missing_ok: bool) -> nn.Module:
    """The module tree of ``model`` with each range layer replaced by sub-network ``index``'s part."""

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, SwitchableBatchNorm2d):
            return module.plain(switch, index, missing_ok=missing_ok)
        if isinstance(module, RangeLayer):
            return module.plain(switch, index)
        if next(module.parameters(recurse=False), None) is not None or module._buffers:
            raise TypeError(f"{type(module).__name__} holds tensors outside range layers; cannot extract")
        clone = copy.copy(module)
        clone._parameters, clone._buffers = {}, {}
        clone._non_persistent_buffers_set = set()
        clone._modules = {k: (None if m is None else convert(m)) for k, m in module._modules.items()}
        return clone

    body = convert(model)
    body.eval()
    return body


class SubNetwork(nn.Module):
    """One device's share of a switch: input image to partial output (before fusion)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.output_and_features(x, None)[0]


class Fusion(nn.Module):
    """Sums the sub-networks' partial outputs and adds the shared bias once."""

    def __init__(self, bias: torch.Tensor | None):
        super().__init__()
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, partials: list[torch.Tensor]) -> torch.Tensor:
        out = torch.stack(partials).sum(0)
        return out if self.bias is None else out + self.bias


class ExtractedSwitch(nn.Module):
    """The sub-networks of one switch and their fusion; ``forward`` runs them one by one."""

    def __init__(self, switch: Switch, subnets: list[SubNetwork], fusion: Fusion):
        super().__init__()
        self.switch = switch
        self.subnets = nn.ModuleList(subnets)
        self.fusion = fusion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fusion([net(x) for net in self.subnets])

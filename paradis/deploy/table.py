"""The planner's per-switch table measured from a trained model (:func:`switch_table`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paradis.costs import profile
from paradis.deploy.planner import SwitchOption
from paradis.deploy.timing import measure_latency
from paradis.deploy.trained import TrainedModel
from paradis.switch import SwitchLike


def switch_table(
    trained: TrainedModel,
    switches: Sequence[SwitchLike] | None = None,
    *,
    measure_batch: int | None = None,
) -> list[SwitchOption]:
    """The planner's table: accuracy (when known), per-device multiply-adds and parameters of each
    switch (default: every switch with BN statistics), and with ``measure_batch`` the median seconds
    of each sub-network on this machine, with the current torch thread count, for that batch size."""
    model = trained.model.eval()
    chosen = [model.resolve(s) for s in switches] if switches else model.bn_switches()
    rows = []
    for s in chosen:
        prof = profile(model, s, trained.input_size)
        seconds = None
        if measure_batch:
            x = torch.randn(measure_batch, *trained.input_size)
            nets = model.extract(s).subnets
            with torch.inference_mode():
                seconds = tuple(measure_latency(lambda net=net, x=x: net(x)) for net in nets)
        rows.append(SwitchOption(s, trained.accuracy.get(str(s)), prof.device_macs, prof.device_params, seconds))
    return rows

"""BN calibration: recompute one switch's statistics after training."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from paradis.models.base import ParaDiSModel
from paradis.switch import SwitchLike


def _inputs(batch) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(f"a calibration batch must be a tensor or an (inputs, targets) pair, got {type(batch).__name__}")


@torch.no_grad()
def calibrate_bn(
    model: ParaDiSModel,
    switch: SwitchLike,
    batches: Iterable,
    *,
    device: torch.device | str | None = None,
) -> int:
    """Reset ``switch``'s BN statistics and recompute them as the exact average over ``batches``.

    Only that switch's running statistics change: no gradient is taken and no parameter or other
    switch's statistics is touched. Returns the number of batches used.
    """
    s = model.resolve(switch)
    bn_layers = list(model.bn_layers())
    for bn in bn_layers:
        bn.reset_stats(s)
    was_training = model.training
    model.train()
    count = 0
    try:
        for batch in batches:
            x = _inputs(batch)
            if device is not None:
                x = x.to(device, non_blocking=True)
            model(x, switch=s, bn_update="cumulative")
            count += 1
    finally:
        model.train(was_training)
    if count == 0:
        for bn in bn_layers:
            bn.drop_stats(s)
        raise ValueError(f"calibrate_bn got no batches for switch {s}")
    return count

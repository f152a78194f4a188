"""Optimizer and learning-rate schedule of a run, from its training section."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


def make_optimizer(params: Iterable[torch.nn.Parameter], t) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, as in the paper; Adam (``momentum`` is its beta1) for WDSR."""
    o = t.optimizer
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay)
    return torch.optim.SGD(
        params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0, weight_decay=o.weight_decay
    )


def lr_lambda(cfg, steps_per_epoch: int) -> Callable[[int], float]:
    """The factor of the base learning rate at each step: ``linear`` to zero (MobileNet v1), ``step``
    (divide at milestones, ResNet-50), ``cosine`` or ``constant``, after an optional linear warm-up."""
    t = cfg.training
    total = max(1, t.epochs * steps_per_epoch)
    warmup = t.schedule.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        epoch = step / steps_per_epoch
        if t.schedule.kind == "linear":
            f = max(0.0, 1.0 - step / total)
        elif t.schedule.kind == "step":
            f = t.schedule.gamma ** sum(epoch >= m for m in t.schedule.milestones)
        elif t.schedule.kind == "cosine":
            f = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        else:
            f = 1.0
        if warmup > 0 and step < warmup:
            f *= (step + 1) / warmup
        return f

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, steps_per_epoch))

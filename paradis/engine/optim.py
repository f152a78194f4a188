"""Optimizer and learning-rate schedule of a run, from its training section."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _is_depthwise(module: torch.nn.Module) -> bool:
    if getattr(module, "depthwise", False):
        return True
    return isinstance(module, torch.nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def decay_groups(model: torch.nn.Module, weight_decay: float, rule: str = "all") -> list[dict]:
    """Parameter groups with their weight decay. ``all`` decays every parameter; ``us-nets`` follows the
    US-Nets reference code: only the weights of full convolutions and linear layers (>= 2 dimensions),
    never depthwise convolutions, normalization parameters or biases."""
    if rule == "all":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    if rule != "us-nets":
        raise ValueError(f"unknown weight-decay rule {rule!r}; known: all, us-nets")
    decayed, plain = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (decayed if p.ndim >= 2 and not _is_depthwise(module) else plain).append(p)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, t) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, as in the paper; Adam (``momentum`` is its beta1) for WDSR; weight
    decay on the parameters ``t.optimizer.decay`` names."""
    o = t.optimizer
    groups = decay_groups(model, o.weight_decay, o.decay)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, betas=(o.momentum, 0.999))
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0)


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

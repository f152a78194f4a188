"""The one general training step (the paper's Algorithm 1).

A step runs a list of switch tasks in order on one mini-batch (a :class:`StepPlan`). Each task trains
one switch either on the ground truth or on the teacher switch's output (Eq. 2), optionally plus
``beta`` times the MSE between its zero-padded features and the detached features of the reference
switch (Eq. 3). The gradients of all tasks accumulate and one optimizer step follows. The methods
differ only in the plans they give.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from paradis.methods.plan import StepPlan
from paradis.switch import Switch
from paradis.tasks import get_task


@dataclass
class StepResult:
    losses: dict[Switch, float] = field(default_factory=dict)
    finite: bool = True

    @property
    def total(self) -> float:
        return float(sum(self.losses.values()))


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    plan: StepPlan,
    *,
    label_smoothing: float = 0.0,
    autocast: contextlib.AbstractContextManager | None = None,
    task_type: str = "classification",
) -> StepResult:
    """One iteration of Algorithm 1: every task's loss backpropagated, then one optimizer step.

    ``task_type`` names the registered task whose losses are used (:mod:`paradis.tasks`): ``y`` holds
    class labels for classification and the high-resolution images for super-resolution.

    ``model`` may be wrapped in ``DistributedDataParallel``: gradients are then synchronised once, on
    the last task's backward pass.
    """
    losses = get_task(task_type).objective(label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    result = StepResult()
    soft: torch.Tensor | None = None
    ref_features: torch.Tensor | None = None
    no_sync = getattr(model, "no_sync", None)
    last = len(plan.tasks) - 1
    for i, task in enumerate(plan.tasks):
        want_features = task.feature_weight > 0 or task.switch == plan.feature_ref
        sync = contextlib.nullcontext() if (no_sync is None or i == last) else no_sync()
        with sync:
            with autocast or contextlib.nullcontext():
                out = model(
                    x,
                    task.switch,
                    return_features=want_features,
                    bn_update="momentum" if task.track_bn else "none",
                )
                features = None
                if want_features:
                    out, features = out
                loss = losses.label_loss(out, y) if task.target == "labels" else losses.teacher_loss(out, soft)
                if task.feature_weight > 0:
                    loss = loss + task.feature_weight * F.mse_loss(features, ref_features)
            loss.backward()
        result.losses[task.switch] = float(loss.detach())
        if task.switch == plan.teacher:
            soft = losses.teacher_target(out)
        if task.switch == plan.feature_ref:
            ref_features = features.detach()
    result.finite = all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
    if result.finite:
        optimizer.step()
    return result

"""The one general training step (the paper's Algorithm 1) and the methods as its configurations.

A step runs a list of switch tasks in order on one mini-batch. Each task trains one switch either on
the labels or on the soft output of the teacher switch (Eq. 2), optionally plus ``beta`` times the MSE
between its zero-padded features and the detached features of the reference switch (Eq. 3). The
gradients of all tasks accumulate and one optimizer step follows. ParaDiS, its ablation variants,
universally slimmable, slimmable and individual training differ only in the tasks they list.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from paradis.config import TrainingConfig
from paradis.switch import Switch, parse_switch

FULL = parse_switch("[1.0]")


@dataclass(frozen=True)
class SwitchTask:
    switch: Switch
    target: Literal["labels", "teacher"]
    feature_weight: float = 0.0  # beta of Eq. (3); 0 means no activation distillation
    track_bn: bool = True  # update this switch's running BN statistics during training


@dataclass(frozen=True)
class StepPlan:
    """What one iteration trains, in execution order."""

    tasks: tuple[SwitchTask, ...]
    teacher: Switch | None = None  # whose detached soft output is the distillation target
    feature_ref: Switch | None = None  # whose detached features are the MSE target

    def __post_init__(self) -> None:
        seen: set[Switch] = set()
        for task in self.tasks:
            if task.target == "teacher" and self.teacher not in seen:
                raise ValueError(f"switch {task.switch} is distilled from {self.teacher}, which has not run before it")
            if task.feature_weight > 0 and self.feature_ref not in seen:
                raise ValueError(
                    f"switch {task.switch} distils features of {self.feature_ref}, which has not run before it"
                )
            seen.add(task.switch)

    @property
    def switches(self) -> list[Switch]:
        return [t.switch for t in self.tasks]


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a soft target distribution (Eq. 2)."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1).mean()


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
) -> StepResult:
    """One iteration of Algorithm 1: every task's loss backpropagated, then one optimizer step.

    ``model`` may be wrapped in ``DistributedDataParallel``: gradients are then synchronised once, on
    the last task's backward pass.
    """
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
                if task.target == "labels":
                    loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)
                else:
                    loss = soft_cross_entropy(out, soft)
                if task.feature_weight > 0:
                    loss = loss + task.feature_weight * F.mse_loss(features, ref_features)
            loss.backward()
        result.losses[task.switch] = float(loss.detach())
        if task.switch == plan.teacher:
            soft = out.detach().float().softmax(-1)
        if task.switch == plan.feature_ref:
            ref_features = features.detach()
    result.finite = all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
    if result.finite:
        optimizer.step()
    return result


# --- methods ---------------------------------------------------------------------------------------
def _distilled_plan(switches: list[Switch], cfg: TrainingConfig, random: set[Switch] = frozenset()) -> StepPlan:
    """Fixed switch list -> tasks, for paradis, slimmable, individual and each US iteration."""
    beta = cfg.beta
    if cfg.distillation == "none":
        tasks = [SwitchTask(s, "labels", track_bn=s not in random) for s in switches]
        ref = FULL if beta > 0 and FULL in switches else None
        if ref is not None:
            tasks.sort(key=lambda t: t.switch != FULL)
            tasks = [t if t.switch == FULL else SwitchTask(t.switch, "labels", beta, t.track_bn) for t in tasks]
        return StepPlan(tuple(tasks), None, ref)
    if cfg.distillation == "wide":
        teacher = parse_switch(cfg.wide_factor)
        if teacher in switches:
            switches = [s for s in switches if s != teacher]
    else:  # ipkd: the widest listed switch is the teacher ([1.0] in the paper)
        teacher = max(switches, key=lambda s: (s.total_exact, -len(s)))
        switches = [s for s in switches if s != teacher]
    ref = FULL if beta > 0 and (FULL in switches or teacher == FULL) else None
    tasks = [SwitchTask(teacher, "labels")]
    ordered = sorted(switches, key=lambda s: s != FULL)  # [1.0] first: its features are the MSE target
    for s in ordered:
        weight = beta if (ref is not None and s != ref) else 0.0
        tasks.append(SwitchTask(s, "teacher", weight, track_bn=s not in random))
    return StepPlan(tuple(tasks), teacher, ref)


class MethodPlanner:
    """Gives the :class:`StepPlan` of every iteration for the configured method."""

    def __init__(self, cfg: TrainingConfig, generator: torch.Generator | None = None):
        self.cfg = cfg
        self.generator = generator or torch.Generator().manual_seed(cfg.seed + 1)
        self._fixed = None if cfg.method == "us" else _distilled_plan(cfg.parsed_switches(), cfg)

    @property
    def trained_switches(self) -> list[Switch]:
        """Switches that get gradients in (some) iterations, excluding US random widths."""
        if self._fixed is not None:
            return self._fixed.switches
        us = self.cfg.us
        plan = _distilled_plan([parse_switch(us.max_width), parse_switch(us.min_width)], self.cfg)
        return plan.switches

    def us_widths(self) -> list[float]:
        """The grid of widths US training samples from and is evaluated at."""
        us = self.cfg.us
        steps = round((us.max_width - us.min_width) / us.grid)
        return sorted({round(us.min_width + k * us.grid, 6) for k in range(steps + 1)} | {us.max_width})

    def next_plan(self) -> StepPlan:
        if self._fixed is not None:
            return self._fixed
        us = self.cfg.us
        grid = self.us_widths()
        picks = torch.randint(len(grid), (us.num_random,), generator=self.generator).tolist()
        largest, smallest = parse_switch(us.max_width), parse_switch(us.min_width)
        random = [parse_switch(grid[k]) for k in picks]
        switches = [largest, smallest] + [s for s in dict.fromkeys(random) if s not in (largest, smallest)]
        return _distilled_plan(switches, self.cfg, random=set(switches[2:]))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def describe_method(cfg: TrainingConfig) -> str:
    """The paper's row names: ``ParaDiS Wide IPKD-A beta=1``, ``US Wide IPKD``, ``Individual [0.5, 0.5]``."""
    if cfg.method == "individual":
        return f"Individual {cfg.switches[0]}"
    base = {"paradis": "ParaDiS", "us": "US", "slimmable": "Slimmable"}[cfg.method]
    kd = {"none": "", "ipkd": " IPKD", "wide": " Wide IPKD"}[cfg.distillation]
    act = f"-A beta={cfg.beta:g}" if cfg.beta > 0 and kd else (f" + A beta={cfg.beta:g}" if cfg.beta > 0 else "")
    return base + kd + act

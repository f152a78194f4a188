"""The one general training step (the paper's Algorithm 1) and the methods as its configurations.

A step runs a list of switch tasks in order on one mini-batch. Each task trains one switch either on
the labels or on the soft output of the teacher switch (Eq. 2), optionally plus ``beta`` times the MSE
between its zero-padded features and the detached features of the reference switch (Eq. 3). The
gradients of all tasks accumulate and one optimizer step follows. ParaDiS, its ablation variants,
universally slimmable, slimmable and individual training differ only in the tasks they list.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

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


TaskType = Literal["classification", "super-resolution"]
TASK_TYPES: tuple[str, ...] = ("classification", "super-resolution")


@dataclass(frozen=True)
class Objective:
    """What a task trains on: the loss to the ground truth, the loss to the teacher's target and how
    the teacher's output becomes that target."""

    label_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    teacher_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    teacher_target: Callable[[torch.Tensor], torch.Tensor]


def objective(task_type: TaskType, *, label_smoothing: float = 0.0) -> Objective:
    """Classification: cross-entropy to the labels and to the teacher's softmax (Eq. 2).
    Super-resolution: L1 to the high-resolution image and to the teacher's detached image."""
    if task_type == "classification":
        return Objective(
            lambda out, y: F.cross_entropy(out, y, label_smoothing=label_smoothing),
            soft_cross_entropy,
            lambda out: out.detach().float().softmax(-1),
        )
    if task_type == "super-resolution":
        return Objective(F.l1_loss, F.l1_loss, lambda out: out.detach().float())
    raise ValueError(f"unknown task type {task_type!r}; known: {', '.join(TASK_TYPES)}")


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
    task_type: TaskType = "classification",
) -> StepResult:
    """One iteration of Algorithm 1: every task's loss backpropagated, then one optimizer step.

    ``task_type`` picks the losses (:func:`objective`): ``y`` holds class labels for classification
    and the high-resolution images for super-resolution.

    ``model`` may be wrapped in ``DistributedDataParallel``: gradients are then synchronised once, on
    the last task's backward pass.
    """
    losses = objective(task_type, label_smoothing=label_smoothing)
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


# --- per-stage configurations (PareCO, TwoStage) ----------------------------------------------------
@dataclass(frozen=True)
class StageSpace:
    """Configurations with one width per stage and sub-network: ``devices`` sub-networks, each with
    ``num_stages`` widths from ``widths``. A configuration's values are listed device by device."""

    num_stages: int
    devices: int
    widths: tuple[float, ...]

    @classmethod
    def from_config(cls, cfg: TrainingConfig, num_stages: int) -> StageSpace:
        return cls(num_stages, cfg.pareco.devices, tuple(cfg.pareco.width_grid()))

    @property
    def names(self) -> list[str]:
        """One name per value: ``d0_s0, d0_s1, ...`` (device, stage)."""
        return [f"d{d}_s{s}" for d in range(self.devices) for s in range(self.num_stages)]

    def switch(self, values: Sequence[float]) -> Switch:
        if len(values) != self.devices * self.num_stages:
            raise ValueError(f"a configuration of {self.devices} device(s) x {self.num_stages} stages, got {values}")
        n = self.num_stages
        return Switch([tuple(values[d * n : (d + 1) * n]) for d in range(self.devices)])

    def values(self, switch: Switch) -> list[float]:
        """Inverse of :meth:`switch` (a uniform sub-network repeats its width in every stage)."""
        if len(switch) != self.devices:
            raise ValueError(f"switch {switch} has {len(switch)} sub-networks, the space {self.devices}")
        n = self.num_stages
        return [w for sub in switch.stage_widths for w in (sub if len(sub) == n else sub * n)]

    @property
    def largest(self) -> Switch:
        return Switch([max(self.widths)] * self.devices)

    @property
    def smallest(self) -> Switch:
        return Switch([min(self.widths)] * self.devices)


class ConfigProposer(Protocol):
    """Where the per-stage configurations an iteration trains come from.

    ``propose(n)`` gives ``n`` configurations; ``observe`` reports the training loss of one on the
    current mini-batch and its cost; ``refresh`` is called every ``tau`` iterations (a learning
    proposer updates its model of the front there). The state round-trips through checkpoints
    (plain tensors, numbers and strings only)."""

    def propose(self, n: int) -> list[Switch]: ...

    def observe(self, switch: Switch, loss: float, cost: float) -> None: ...

    def refresh(self) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class RandomProposer:
    """Uniformly random stage widths (TwoStage's supernet training): it never learns from feedback."""

    def __init__(self, space: StageSpace, seed: int = 0):
        self.space = space
        self.generator = torch.Generator().manual_seed(seed)

    def propose(self, n: int) -> list[Switch]:
        k = len(self.space.names)
        picks = torch.randint(len(self.space.widths), (n, k), generator=self.generator).tolist()
        return [self.space.switch([self.space.widths[i] for i in row]) for row in picks]

    def observe(self, switch: Switch, loss: float, cost: float) -> None:
        return None  # uniform sampling by design: the losses are not used

    def refresh(self) -> None:
        return None

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class MethodPlanner:
    """Gives the :class:`StepPlan` of every iteration for the configured method.

    ``pareco`` and ``twostage`` need the model's ``num_stages`` and a ``cost`` of a configuration
    (multiply-adds); ``pareco`` also a learning ``proposer`` (``orchestration.pareco`` has the Optuna
    one: paradis never imports Optuna), ``twostage`` defaults to :class:`RandomProposer`. After each
    step the trainer hands the step's losses back through :meth:`observe`.
    """

    def __init__(
        self,
        cfg: TrainingConfig,
        generator: torch.Generator | None = None,
        *,
        num_stages: int = 1,
        proposer: ConfigProposer | None = None,
        cost: Callable[[Switch], float] | None = None,
    ):
        self.cfg = cfg
        self.generator = generator or torch.Generator().manual_seed(cfg.seed + 1)
        self.space: StageSpace | None = None
        self.proposer = proposer
        self.cost = cost
        self._sampled: list[Switch] = []
        self._proposed: list[Switch] = []
        self._iterations = 0
        if cfg.method in ("pareco", "twostage"):
            self.space = StageSpace.from_config(cfg, num_stages)
            if proposer is None and cfg.method == "twostage":
                self.proposer = RandomProposer(self.space, cfg.pareco.proposer_seed)
            if self.proposer is None:
                raise ValueError(
                    "method pareco needs a multi-objective proposer (orchestration.pareco.OptunaProposer); "
                    "run it with orchestration/run_study.py or pass proposer= to run_training"
                )
            if cost is None:
                raise ValueError(f"method {cfg.method} needs the cost of a configuration (cost=)")
        sampled_methods = ("us", "pareco", "twostage")
        self._fixed = None if cfg.method in sampled_methods else _distilled_plan(cfg.parsed_switches(), cfg)

    @property
    def trained_switches(self) -> list[Switch]:
        """Switches that get gradients in (some) iterations, excluding US random widths."""
        if self._fixed is not None:
            return self._fixed.switches
        if self.space is not None:
            return _distilled_plan([self.space.largest, self.space.smallest], self.cfg).switches
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
        if self.space is not None:
            # The sandwich of PareCO (Algorithm 1 of the PareCO paper): largest, smallest and M proposed
            # configurations, the others distilled in place from the largest.
            largest, smallest = self.space.largest, self.space.smallest
            proposed = self.proposer.propose(self.cfg.pareco.num_sampled)
            self._sampled = [s for s in dict.fromkeys(proposed) if s not in (largest, smallest)]
            self._proposed = proposed
            return _distilled_plan([largest, smallest, *self._sampled], self.cfg, random=set(self._sampled))
        us = self.cfg.us
        grid = self.us_widths()
        picks = torch.randint(len(grid), (us.num_random,), generator=self.generator).tolist()
        largest, smallest = parse_switch(us.max_width), parse_switch(us.min_width)
        random = [parse_switch(grid[k]) for k in picks]
        switches = [largest, smallest] + [s for s in dict.fromkeys(random) if s not in (largest, smallest)]
        return _distilled_plan(switches, self.cfg, random=set(switches[2:]))

    def observe(self, result: StepResult) -> None:
        """Feed the proposer the losses of the configurations it proposed; refresh it every tau steps."""
        if self.space is None:
            return
        # Every proposal was trained (one equal to the largest or smallest configuration as that one).
        for s in dict.fromkeys(self._proposed):
            if s in result.losses:
                self.proposer.observe(s, result.losses[s], float(self.cost(s)))
        self._iterations += 1
        if self._iterations % self.cfg.pareco.refresh_every == 0:
            self.proposer.refresh()

    def state_dict(self) -> dict:
        state: dict = {"generator": self.generator.get_state(), "iterations": self._iterations}
        if self.proposer is not None:
            state["proposer"] = self.proposer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._iterations = int(state.get("iterations", 0))
        if self.proposer is not None and "proposer" in state:
            self.proposer.load_state_dict(state["proposer"])


def describe_method(cfg: TrainingConfig) -> str:
    """The paper's row names: ``ParaDiS Wide IPKD-A beta=1``, ``US Wide IPKD``, ``Individual [0.5, 0.5]``."""
    if cfg.method == "individual":
        return f"Individual {cfg.switches[0]}"
    base = {
        "paradis": "ParaDiS",
        "us": "US",
        "slimmable": "Slimmable",
        "pareco": "PareCO",
        "twostage": "TwoStage",
    }[cfg.method]
    kd = {"none": "", "ipkd": " IPKD", "wide": " Wide IPKD"}[cfg.distillation]
    act = f"-A beta={cfg.beta:g}" if cfg.beta > 0 and kd else (f" + A beta={cfg.beta:g}" if cfg.beta > 0 else "")
    return base + kd + act

"""What one iteration trains (torch-free): switch tasks in execution order and the distillation plan
that the fixed-switch methods and every US iteration share."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

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


def distilled_plan(
    switches: list[Switch], distillation: str, beta: float, wide_factor: float, random: Collection[Switch] = ()
) -> StepPlan:
    """A switch list as tasks: on the labels (``none``), or distilled from the widest listed switch
    (``ipkd``) or the wide model (``wide``), ``beta`` times the MSE to the ``[1.0]`` features where
    ``[1.0]`` runs. ``random`` switches keep no BN statistics."""
    if distillation == "none":
        tasks = [SwitchTask(s, "labels", track_bn=s not in random) for s in switches]
        ref = FULL if beta > 0 and FULL in switches else None
        if ref is not None:
            tasks.sort(key=lambda t: t.switch != FULL)
            tasks = [t if t.switch == FULL else SwitchTask(t.switch, "labels", beta, t.track_bn) for t in tasks]
        return StepPlan(tuple(tasks), None, ref)
    if distillation == "wide":
        teacher = parse_switch(wide_factor)
        switches = [s for s in switches if s != teacher]
    else:  # ipkd: the widest listed switch is the teacher ([1.0] in the paper)
        teacher = max(switches, key=lambda s: (s.total_exact, -len(s)))
        switches = [s for s in switches if s != teacher]
    ref = FULL if beta > 0 and (FULL in switches or teacher == FULL) else None
    tasks = [SwitchTask(teacher, "labels")]
    for s in sorted(switches, key=lambda s: s != FULL):  # [1.0] first: its features are the MSE target
        weight = beta if (ref is not None and s != ref) else 0.0
        tasks.append(SwitchTask(s, "teacher", weight, track_bn=s not in random))
    return StepPlan(tuple(tasks), teacher, ref)

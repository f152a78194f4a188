"""The end-of-trial front step: a trained network's accuracy-cost front, selected on the training
images held out of training (``data.holdout``) and measured on the test split, and, for the variant a
study names, the best per-stage switch under per-device budgets.

Which configurations are put forward is the method's (:attr:`paradis.methods.Method.front`): the
width grid (us), the trained switches (slimmable), the configurations the proposer found while
training (pareco) or a multi-objective search of the trained network (twostage)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestration.pareco import constrained_search, front_search
from orchestration.pareto import hypervolume, non_dominated
from paradis.bn import calibrate_bn
from paradis.costs import profile
from paradis.engine.evaluation import evaluate_switches
from paradis.methods import StageSpace, get_method
from paradis.switch import Switch, parse_switch
from paradis.tasks.classification import accuracy


@dataclass(frozen=True)
class FrontPoint:
    """One evaluated configuration: validation and test top-1, multiply-adds in total and per device."""

    method: str
    switch: str
    macs: int
    max_device_macs: int
    val_top1: float | None
    top1: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Front:
    """What a trial contributes to the study's fronts report."""

    name: str
    label: str
    method: str
    points: list[FrontPoint]
    evaluated: list[FrontPoint]
    hypervolume: float
    full_macs: float
    seconds: float
    distributable: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**asdict(self), "points": [p.as_dict() for p in self.points]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Front:
        pts = [FrontPoint(**p) for p in d["points"]]
        return cls(**{**d, "points": pts, "evaluated": [FrontPoint(**p) for p in d["evaluated"]]})


class Evaluator:
    """Calibrated validation and test accuracy and cached costs of configurations of a trained run."""

    def __init__(self, trainer):
        self.trainer, self.model = trainer, trainer.model
        self.val_loader = trainer.loader(trainer.data.val)
        self._profiles: dict[Switch, Any] = {}
        self._val: dict[Switch, float] = {}

    def profile(self, s: Switch):
        if s not in self._profiles:
            self._profiles[s] = profile(self.model, s, self.trainer.input_size)
        return self._profiles[s]

    def macs(self, s: Switch) -> float:
        return float(self.profile(s).macs)

    def device_macs(self, s: Switch) -> float:
        return float(self.profile(s).max_device_macs)

    def val_top1(self, s: Switch) -> float:
        if s not in self._val:
            calibrate_bn(self.model, s, self.trainer.calibration(), device=self.trainer.device)
            self._val[s] = accuracy(self.model, s, self.val_loader, device=self.trainer.device)[1]
            for bn in self.model.bn_layers():  # a searched configuration keeps no statistics
                bn.drop_stats(s)
        return self._val[s]

    def test_top1(self, s: Switch) -> float:
        calibrate_bn(self.model, s, self.trainer.calibration(), device=self.trainer.device)
        return accuracy(self.model, s, self.trainer.test_loader, device=self.trainer.device)[1]


def candidates(front_spec, trainer, ev: Evaluator, proposer) -> list[Switch]:
    """The configurations a method puts forward for its front, within ``front.evaluations``."""
    t, method = trainer.t, get_method(trainer.t.method)
    if method.front in ("widths", "switches"):
        return method.front_candidates(t, trainer.planner)
    space = StageSpace.from_config(t, trainer.model.num_stages)
    ends = [space.largest, space.smallest]
    if method.front == "proposer":  # the front PareCO learned while training: its history, best layers first
        found = proposer.front_configurations(front_spec.evaluations, last=front_spec.history_last)
        return list(dict.fromkeys(ends + found))
    found = front_search(  # TwoStage: the search after training, on the validation split
        space,
        ev.val_top1,
        ev.macs,
        trials=front_spec.evaluations,
        sampler=front_spec.sampler,
        seed=front_spec.seed,
        population_size=front_spec.population_size,
    )
    return list(dict.fromkeys(ends + [s for s, _, _ in found]))


def select_front(spec, name: str, trainer, proposer, log=print) -> Front:
    """The trial's front: every candidate measured on validation, the non-dominated ones on test."""
    started, f = time.perf_counter(), spec.front
    ev = Evaluator(trainer)
    cands = candidates(f, trainer, ev, proposer)
    evaluated = [FrontPoint(name, str(s), int(ev.macs(s)), int(ev.device_macs(s)), ev.val_top1(s)) for s in cands]
    keep = non_dominated([(p.macs, p.val_top1) for p in evaluated])
    points = [
        FrontPoint(**{**evaluated[i].as_dict(), "top1": ev.test_top1(parse_switch(evaluated[i].switch))}) for i in keep
    ]
    points.sort(key=lambda p: p.macs)
    full = ev.macs(parse_switch("[1.0]"))
    hv = hypervolume([(p.macs / full, p.top1) for p in points], (f.reference.macs_fraction, f.reference.top1))
    label = f"{name} ({get_method(trainer.t.method).describe(trainer.t)})"
    out = Front(name, label, trainer.t.method, points, evaluated, hv, full, time.perf_counter() - started)
    d = spec.distributable
    if d is not None and d.variant == name:
        out.distributable = distributable_table(spec, trainer, ev, full, log)
    log(f"{name}: hypervolume {hv:.4f}, {len(points)} front points of {len(evaluated)} evaluated")
    return out


def distributable_table(spec, trainer, ev: Evaluator, full: float, log) -> list[dict]:
    """For each per-device budget: the best per-stage switch found on validation, then the test table
    of the found switches beside the uniform ones."""
    d = spec.distributable
    space = StageSpace.from_config(trainer.t, trainer.model.num_stages)
    found: dict[Switch, str] = {}
    for b in d.budgets:
        best, val_acc, _ = constrained_search(
            space, ev.val_top1, ev.device_macs, b * full, trials=d.trials, seed=spec.front.seed
        )
        log(f"distributable: budget {b:g} x [1.0] per device -> {best} (validation top-1 {val_acc:.4f})")
        if best is not None:
            found[best] = f"{found[best]}; {b:g}" if best in found else f"{b:g}"
    switches = list(found) + [parse_switch(s) for s in d.uniform if parse_switch(s) not in found]
    rows = evaluate_switches(
        trainer.model,
        switches,
        calibration=trainer.calibration,
        test_loader=trainer.test_loader,
        input_size=trainer.input_size,
        num_classes=trainer.data.info.num_classes,
        device=trainer.device,
    )
    out = []
    for r in rows:
        s = parse_switch(r.switch)
        out.append({**r.as_dict(), "found_for_budget": found.get(s, ""), "per_stage": not s.is_uniform})
    return out

"""PareCO and TwoStage (Chin et al.): per-stage widths. Every iteration trains the largest and the
smallest configuration and ``num_sampled`` configurations with one width per stage and sub-network,
distilled in place from the largest. PareCO's configurations come from a learning multi-objective
proposer (the orchestration layer's Optuna one: paradis never imports Optuna) that this module knows
only through :class:`ConfigProposer`; TwoStage draws them uniformly at random."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from paradis.methods.base import Method, register_method
from paradis.methods.plan import StepPlan, distilled_plan
from paradis.methods.us import width_grid
from paradis.switch import Switch


@dataclass(frozen=True)
class StageSpace:
    """Configurations with one width per stage and sub-network: ``devices`` sub-networks, each with
    ``num_stages`` widths from ``widths``. A configuration's values are listed device by device."""

    num_stages: int
    devices: int
    widths: tuple[float, ...]

    @classmethod
    def from_config(cls, t, num_stages: int) -> StageSpace:
        p = t.pareco
        return cls(num_stages, p.devices, tuple(width_grid(p.min_width, p.max_width, p.grid)))

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
        import torch

        self.space = space
        self.generator = torch.Generator().manual_seed(seed)

    def propose(self, n: int) -> list[Switch]:
        import torch

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


class StagePlanner:
    """PareCO's sandwich (Algorithm 1 of the PareCO paper): largest, smallest and M proposed
    configurations; the proposer is told their losses and refreshed every tau iterations."""

    def __init__(self, t, space: StageSpace, proposer: ConfigProposer, cost: Callable[[Switch], float]):
        self.t, self.space, self.proposer, self.cost = t, space, proposer, cost
        self._proposed: list[Switch] = []
        self._iterations = 0

    def _plan(self, switches: list[Switch], random: set[Switch] = frozenset()) -> StepPlan:
        t = self.t
        return distilled_plan(switches, t.distillation, t.beta, t.wide_factor, random=random)

    @property
    def trained_switches(self) -> list[Switch]:
        return self._plan([self.space.largest, self.space.smallest]).switches

    def next_plan(self) -> StepPlan:
        largest, smallest = self.space.largest, self.space.smallest
        self._proposed = self.proposer.propose(self.t.pareco.num_sampled)
        sampled = [s for s in dict.fromkeys(self._proposed) if s not in (largest, smallest)]
        return self._plan([largest, smallest, *sampled], random=set(sampled))

    def observe(self, result) -> None:
        # Every proposal was trained (one equal to the largest or smallest configuration as that one).
        for s in dict.fromkeys(self._proposed):
            if s in result.losses:
                self.proposer.observe(s, result.losses[s], float(self.cost(s)))
        self._iterations += 1
        if self._iterations % self.t.pareco.refresh_every == 0:
            self.proposer.refresh()

    def state_dict(self) -> dict:
        return {"iterations": self._iterations, "proposer": self.proposer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._iterations = int(state.get("iterations", 0))
        if "proposer" in state:
            self.proposer.load_state_dict(state["proposer"])


class _PerStage(Method):
    default_distillation = "ipkd"
    needs_cost = True

    def validate(self, t) -> None:
        p = t.pareco
        if p.devices * p.max_width > t.wide_factor:
            raise ValueError(
                f"pareco: {p.devices} device(s) of max_width {p.max_width:g} span more than the wide factor "
                f"{t.wide_factor:g}"
            )
        if t.beta > 0:
            raise ValueError(f"method {self.name} does not distil features: beta must be 0")

    def default_proposer(self, space: StageSpace, t) -> ConfigProposer | None:
        return None

    def planner(self, t, *, num_stages=1, proposer=None, cost=None) -> StagePlanner:
        space = StageSpace.from_config(t, num_stages)
        proposer = proposer or self.default_proposer(space, t)
        if proposer is None:
            raise ValueError(
                f"method {self.name} needs a multi-objective proposer (orchestration.pareco.OptunaProposer); "
                "run it with orchestration/run_study.py or pass proposer= to run_training"
            )
        if cost is None:
            raise ValueError(f"method {self.name} needs the cost of a configuration (cost=)")
        return StagePlanner(t, space, proposer, cost)


@register_method
class PareCO(_PerStage):
    name = "pareco"
    label = "PareCO"
    front = "proposer"
    needs_proposer = True


@register_method
class TwoStage(_PerStage):
    name = "twostage"
    label = "TwoStage"
    front = "search"

    def default_proposer(self, space: StageSpace, t) -> RandomProposer:
        return RandomProposer(space, t.pareco.proposer_seed)

"""Training methods as registered objects (torch-free to import).

A method says how it plans each step (:meth:`Method.planner`), which switches it trains and
evaluates, how the paper's tables name it, whether it needs a cost model or a proposer, and what it
puts forward for an accuracy-cost front. The configuration's allowed ``training.method`` values are
this registry's names; a new method is one file in this package and its import in ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, Protocol

from paradis.methods.plan import FULL, StepPlan, distilled_plan
from paradis.registry import Registry
from paradis.switch import Switch, parse_switch

# What a method contributes to a front: the grid of widths it trains (us), its trained switches
# (slimmable), the configurations its proposer found while training (pareco), or a search of the
# trained network (twostage).
FrontSource = Literal["widths", "switches", "proposer", "search"]
KD_NAMES = {"none": "", "ipkd": " IPKD", "wide": " Wide IPKD"}
PAPER_EXTRA_SWITCH = parse_switch("[0.5, 0.25, 0.25]")


class Planner(Protocol):
    """Gives the :class:`StepPlan` of every iteration; checkpoints round-trip its state."""

    @property
    def trained_switches(self) -> list[Switch]: ...

    def next_plan(self) -> StepPlan: ...

    def observe(self, result: Any) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class FixedPlanner:
    """The same switches every iteration (ParaDiS, slimmable, individual)."""

    def __init__(self, plan: StepPlan):
        self.plan = plan

    @property
    def trained_switches(self) -> list[Switch]:
        return self.plan.switches

    def next_plan(self) -> StepPlan:
        return self.plan

    def observe(self, result: Any) -> None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


class Method:
    """Base of the methods: a fixed list of switches distilled per ``training.distillation``."""

    name: ClassVar[str]
    label: ClassVar[str]  # the paper's row name
    default_distillation: ClassVar[str] = "none"
    front: ClassVar[FrontSource | None] = None
    needs_proposer: ClassVar[bool] = False  # a learning proposer comes from the orchestration layer
    needs_cost: ClassVar[bool] = False  # multiply-adds of a configuration, per step
    matches_cost: ClassVar[bool] = False  # evaluated also at the widths closest in cost to the paper's switches
    rounding: ClassVar[str] = "paradis"  # how its models turn single widths into channels by default

    def validate(self, t: Any) -> None:
        """Raise ``ValueError`` (naming the key) where the training section does not suit the method."""
        if t.beta > 0 and FULL not in t.parsed_switches():
            raise ValueError("beta > 0 distils the [1.0] features, but [1.0] is not among the switches")

    def planner(
        self, t: Any, *, num_stages: int = 1, proposer: Any = None, cost: Callable[[Switch], float] | None = None
    ) -> Planner:
        return FixedPlanner(distilled_plan(t.parsed_switches(), t.distillation, t.beta, t.wide_factor))

    def trained(self, t: Any, planner: Planner) -> set[Switch]:
        """Switches that get gradients in some iteration (shown as trained in the tables)."""
        return set(planner.trained_switches)

    def evaluated(self, t: Any, planner: Planner) -> list[Switch]:
        """The switches evaluated when ``evaluation.switches`` is not given."""
        return sort_switches(dict.fromkeys(planner.trained_switches))

    def match_widths(self, t: Any, planner: Planner) -> list[float]:
        """Single widths matched in cost to the paper's switches (``matches_cost`` methods)."""
        return []

    def front_candidates(self, t: Any, planner: Planner) -> list[Switch]:
        """The configurations a ``widths`` or ``switches`` front is selected from."""
        return []

    def describe(self, t: Any) -> str:
        """The paper's row names: ``ParaDiS Wide IPKD-A beta=1``, ``US Wide IPKD``."""
        kd = KD_NAMES[t.distillation]
        act = f"-A beta={t.beta:g}" if t.beta > 0 and kd else (f" + A beta={t.beta:g}" if t.beta > 0 else "")
        return self.label + kd + act


def sort_switches(switches) -> list[Switch]:
    """The tables' order: widest first, then the widest first sub-network, then fewer devices."""
    return sorted(switches, key=lambda s: (-s.total, -s.widths[0], len(s)))


METHODS: Registry[Method] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    """Register a method class under its ``name``; a name is registered once."""
    METHODS.add(cls.name, cls())
    return cls


def get_method(name: str) -> Method:
    return METHODS.get(name)


def list_methods() -> list[str]:
    return METHODS.names()

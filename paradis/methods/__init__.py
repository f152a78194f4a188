"""Training methods: one registered object each (:mod:`paradis.methods.base`), one file each.

A new method is one file here and its import below. ``make_planner`` gives the per-iteration plans of
a training section; :func:`paradis.methods.step.train_step` (imported on use: it needs torch) runs them.
"""

from paradis.methods import individual, paradis, pareco, slimmable, us  # noqa: F401  (registers the methods)
from paradis.methods.base import Method, Planner, get_method, list_methods, register_method, sort_switches
from paradis.methods.pareco import ConfigProposer, RandomProposer, StageSpace
from paradis.methods.plan import FULL, StepPlan, SwitchTask, distilled_plan

__all__ = [
    "FULL",
    "ConfigProposer",
    "Method",
    "Planner",
    "RandomProposer",
    "StageSpace",
    "StepPlan",
    "SwitchTask",
    "describe_method",
    "distilled_plan",
    "get_method",
    "list_methods",
    "make_planner",
    "register_method",
    "sort_switches",
]


def make_planner(t, *, num_stages: int = 1, proposer=None, cost=None) -> Planner:
    """The planner of training section ``t`` (its method's)."""
    return get_method(t.method).planner(t, num_stages=num_stages, proposer=proposer, cost=cost)


def describe_method(t) -> str:
    """The paper's row name of training section ``t``: ``ParaDiS Wide IPKD-A beta=1``."""
    return get_method(t.method).describe(t)

"""Universally slimmable networks (Yu & Huang 2019): the sandwich rule, the largest and the smallest
width and ``num_random`` widths of a grid every step; random widths keep no BN statistics."""

from __future__ import annotations

from paradis.methods.base import Method, register_method
from paradis.methods.plan import StepPlan, distilled_plan
from paradis.switch import Switch, parse_switch


def width_grid(lo: float, hi: float, step: float) -> list[float]:
    steps = round((hi - lo) / step)
    return sorted({round(lo + k * step, 6) for k in range(steps + 1)} | {hi})


class USPlanner:
    def __init__(self, t, seed: int):
        import torch

        self.t = t
        self.generator = torch.Generator().manual_seed(seed)

    def us_widths(self) -> list[float]:
        """The grid of widths US training samples from and is evaluated at."""
        us = self.t.us
        return width_grid(us.min_width, us.max_width, us.grid)

    @property
    def trained_switches(self) -> list[Switch]:
        t = self.t
        return distilled_plan(
            [parse_switch(t.us.max_width), parse_switch(t.us.min_width)], t.distillation, t.beta, t.wide_factor
        ).switches

    def next_plan(self) -> StepPlan:
        import torch

        t, grid = self.t, self.us_widths()
        picks = torch.randint(len(grid), (t.us.num_random,), generator=self.generator).tolist()
        largest, smallest = parse_switch(t.us.max_width), parse_switch(t.us.min_width)
        random = [parse_switch(grid[k]) for k in picks]
        switches = [largest, smallest] + [s for s in dict.fromkeys(random) if s not in (largest, smallest)]
        return distilled_plan(switches, t.distillation, t.beta, t.wide_factor, random=set(switches[2:]))

    def observe(self, result) -> None:
        return None

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@register_method
class US(Method):
    name = "us"
    label = "US"
    default_distillation = "wide"
    front = "widths"
    matches_cost = True
    rounding = "us-nets"  # make_divisible(C * w, 8), as in the authors' code

    def validate(self, t) -> None:
        if t.us.max_width > t.wide_factor:
            raise ValueError(f"us.max_width {t.us.max_width} is wider than the wide factor {t.wide_factor}")

    def planner(self, t, *, num_stages=1, proposer=None, cost=None) -> USPlanner:
        return USPlanner(t, t.seed + 1)

    def trained(self, t, planner) -> set[Switch]:  # every width of the grid is sampled during training
        return set(planner.trained_switches) | {parse_switch(w) for w in planner.us_widths()}

    def match_widths(self, t, planner) -> list[float]:
        return planner.us_widths()

    def front_candidates(self, t, planner) -> list[Switch]:
        return [parse_switch(w) for w in planner.us_widths()]

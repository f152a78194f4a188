"""Slimmable networks (Yu et al. 2019): single widths such as ``[0.5]``, each with private BN."""

from __future__ import annotations

from paradis.methods.base import Method, register_method


@register_method
class Slimmable(Method):
    name = "slimmable"
    label = "Slimmable"
    front = "switches"
    matches_cost = True
    rounding = "us-nets"  # make_divisible(C * w, 8), as in the authors' code

    def validate(self, t) -> None:
        super().validate(t)
        if any(not s.is_single for s in t.parsed_switches()):
            raise ValueError("method slimmable trains single-width switches such as [0.5], not lists")

    def match_widths(self, t, planner) -> list[float]:
        return [s.total for s in t.parsed_switches()]

    def front_candidates(self, t, planner):
        return t.parsed_switches()

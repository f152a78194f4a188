"""ParaDiS (the paper's Algorithm 1): the listed switches every step, distilled from the wide model
by default; the never-trained ``[0.5, 0.25, 0.25]`` is evaluated beside them."""

from __future__ import annotations

from paradis.methods.base import PAPER_EXTRA_SWITCH, Method, register_method, sort_switches


@register_method
class ParaDiS(Method):
    name = "paradis"
    label = "ParaDiS"
    default_distillation = "wide"

    def evaluated(self, t, planner):
        switches = list(dict.fromkeys(planner.trained_switches))
        if PAPER_EXTRA_SWITCH not in switches and PAPER_EXTRA_SWITCH.total <= t.wide_factor:
            switches.append(PAPER_EXTRA_SWITCH)
        return sort_switches(switches)

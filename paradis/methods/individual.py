"""An individually trained model of one switch, on the labels alone (the paper's baseline)."""

from __future__ import annotations

from paradis.methods.base import Method, register_method


@register_method
class Individual(Method):
    name = "individual"
    label = "Individual"

    def validate(self, t) -> None:
        super().validate(t)
        if len(t.switches) != 1:
            raise ValueError(f"method individual trains exactly one switch, got {len(t.switches)}")
        if t.distillation != "none":
            raise ValueError("method individual trains on the labels alone: distillation must be none")

    def describe(self, t) -> str:
        return f"Individual {t.switches[0]}"

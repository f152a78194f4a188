"""A trial's switch table as the report reads it back (from a store or an exported file): every value
the report uses is checked (a switch that parses, an accuracy in [0, 1], a PSNR in dB, costs >= 0), so
that a crafted or corrupted table is one line naming where it came from, never a traceback or a
"reproduced" from an accuracy of 5000 %."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from paradis.switch import parse_switch


class SwitchRow(BaseModel):
    """One switch of a trial's table; the values the report reads are checked, others kept."""

    model_config = ConfigDict(extra="allow")
    switch: str
    trained: bool = True
    top1: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    psnr: float | None = Field(None, ge=0.0, le=200.0, allow_inf_nan=False)
    macs: float = Field(ge=0.0, allow_inf_nan=False)
    max_device_macs: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    matches: str | None = None
    scores: list[float] | None = Field(None, max_length=10_000)  # an Optuna trial's seeds, by repeat index

    @field_validator("switch")
    @classmethod
    def _switch(cls, v: str) -> str:
        return str(parse_switch(v))

    @model_validator(mode="after")
    def _scores(self) -> SwitchRow:
        """A seed's value is the row's measure: an accuracy in [0, 1], or a PSNR in dB."""
        high = 1.0 if self.psnr is None else 200.0
        for i, v in enumerate(self.scores or ()):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= high):
                raise ValueError(f"scores[{i}]: {v!r} is not a measure in [0, {high:g}]")
        return self

    @field_validator("matches")
    @classmethod
    def _matches(cls, v: str | None) -> str | None:
        if v is not None:
            for s in v.split("; "):
                parse_switch(s)
        return v


def check_rows(rows: list[Any], where: str) -> list[dict[str, Any]]:
    """``rows`` checked as :class:`SwitchRow`\\ s (a switch at most once); ``ValueError`` naming
    ``where`` and the first problem otherwise."""
    out, seen = [], set()
    for i, row in enumerate(rows):
        try:
            checked = SwitchRow.model_validate(row)
        except ValidationError as err:
            e = err.errors()[0]
            loc = ".".join(str(p) for p in e["loc"]) or "(row)"
            raise ValueError(f"{where}: row {i}: {loc}: {e['msg']}") from None
        if checked.switch in seen:
            raise ValueError(f"{where}: row {i}: switch {checked.switch} appears twice")
        seen.add(checked.switch)
        out.append(checked.model_dump())
    return out

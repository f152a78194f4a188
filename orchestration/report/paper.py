"""The paper's own numbers (``paper.yaml``: Tables 1-5) and the sentences its claims quote, as the
report's study results: one "seed" per configuration, so that every claim can be evaluated on the
paper itself, value against value, and must find what the paper says."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestration.report.study import TrialRecord
from paradis.switch import parse_switch

PAPER_FILE = Path(__file__).with_name("paper.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PaperModel(_Strict):
    macs: float = Field(gt=0, description="multiply-adds of the full (1.0) model")


class PaperConfiguration(_Strict):
    label: str
    top1: dict[str, float]
    untrained: list[str] = []  # switches the paper evaluates but never trains
    matches: dict[str, str] = {}  # a US width -> the ParaDiS switch it matches in total cost

    @field_validator("top1")
    @classmethod
    def _percentages(cls, v: dict[str, float]) -> dict[str, float]:
        for switch, acc in v.items():
            parse_switch(switch)
            if not 0 < acc <= 100:
                raise ValueError(f"{switch}: {acc} is not a percentage")
        return v

    @model_validator(mode="after")
    def _known_switches(self) -> PaperConfiguration:
        unknown = [s for s in [*self.untrained, *self.matches] if s not in self.top1]
        if unknown:
            raise ValueError(f"switches without a value: {unknown}")
        return self


class PaperStudy(_Strict):
    source: str
    model: str
    configurations: dict[str, PaperConfiguration]


class PaperClaim(_Strict):
    quote: str
    where: str
    reading: str
    tables: list[str]


class Paper(_Strict):
    models: dict[str, PaperModel]
    studies: dict[str, PaperStudy]
    claims: dict[str, PaperClaim]

    @model_validator(mode="after")
    def _references(self) -> Paper:
        for key, study in self.studies.items():
            if study.model not in self.models:
                raise ValueError(f"studies.{key}.model: unknown model {study.model!r}")
        for key, c in self.claims.items():
            missing = [t for t in c.tables if t not in self.studies]
            if missing:
                raise ValueError(f"claims.{key}.tables: unknown studies {missing}")
        return self


@cache
def load_paper(path: Path = PAPER_FILE) -> Paper:
    return Paper.model_validate(yaml.safe_load(path.read_text()))


def switch_macs(switch: str, full: float) -> tuple[float, float]:
    """Total and largest sub-network's multiply-adds of ``switch`` by Appendix B's representation
    (a width ``w`` costs ``w ** 2`` of the full model)."""
    widths = parse_switch(switch).widths
    return full * sum(w * w for w in widths), full * max(w * w for w in widths)


def paper_records(study: PaperStudy, full_macs: float) -> list[TrialRecord]:
    """A configuration as one trial (repeat 0) whose rows carry the paper's accuracies (fractions)."""
    records = []
    for name, conf in study.configurations.items():
        rows = []
        for switch, acc in conf.top1.items():
            macs, device = switch_macs(switch, full_macs)
            rows.append(
                {
                    "switch": str(parse_switch(switch)),
                    "trained": switch not in conf.untrained,
                    "top1": acc / 100,
                    "macs": macs,
                    "max_device_macs": device,
                    "devices": len(parse_switch(switch).widths),
                    "matches": str(parse_switch(conf.matches[switch])) if switch in conf.matches else None,
                }
            )
        records.append(TrialRecord(name, name, conf.label, {"variant": name, "repeat": 0}, rows))
    return records

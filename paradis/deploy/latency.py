"""Per-device latency tables: what ``profile-devices`` measures on each device, and what ``plan`` reads.

One JSON file per device (``<device>.json``)::

    {"format": "paradis-latency-table", "version": 1,
     "device": "a", "host": {"hostname": ..., "cpu": ..., "threads": 1, "torch": ..., "onnxruntime": ...},
     "model": {"name": ..., "num_classes": ..., "in_chans": ..., "wide_factor": ...}, "source": ...,
     "batch": 64, "input_shape": [64, 1, 28, 28], "warmup": 5, "repeats": 30,
     "runtimes": ["torch", "onnxruntime"], "measured_at": "2026-12-01T17:00:00+00:00",
     "switches": [{"switch": "[0.5, 0.5]", "accuracy": 0.8, "device_macs": [...], "device_params": [...],
                   "parts": [{"index": 0, "width": 0.5,
                              "torch": {"p50_s": ..., "p95_s": ..., "mean_s": ..., "min_s": ..., "max_s": ...,
                                        "repeats": 30},
                              "onnxruntime": {...}}, ...]}, ...]}

A part's time is one call of its sub-network on a batch of ``batch`` images on that device (torch:
input transfer and output copy included; ONNX Runtime: the session run), after ``warmup`` calls;
``p50_s`` and ``p95_s`` are over ``repeats`` calls. Reading checks every value (bounded JSON, finite
non-negative seconds, one part per sub-network: :class:`TableSchema`, strict), so a damaged or hostile
table is one clear error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationError, model_validator

from paradis.deploy.files import MAX_JSON_BYTES, quote, read_json
from paradis.deploy.planner import Accuracy, Counts, Device, Latencies, SwitchOption
from paradis.deploy.schema import Strict, SwitchText, count, fail, number, one_line
from paradis.switch import Switch, parse_switch

FORMAT = "paradis-latency-table"
VERSION = 1
RUNTIMES = ("torch", "onnxruntime")
STATISTICS = ("p50", "p95")
MAX_TABLES = 256

Seconds = number(0.0, 3600.0)


class Timing(Strict):
    """:func:`paradis.deploy.timing.latency_summary` of one part on one runtime."""

    p50_s: Seconds
    p95_s: Seconds
    mean_s: number(0.0) | None = None
    min_s: number(0.0) | None = None
    max_s: number(0.0) | None = None
    repeats: count(1) | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Timing:
        order = [("min_s", self.min_s), ("p50_s", self.p50_s), ("p95_s", self.p95_s), ("max_s", self.max_s)]
        known = [(k, v) for k, v in order if v is not None]
        for (k1, v1), (k2, v2) in pairwise(known):
            if v1 > v2:
                raise ValueError(f"{k1} {v1:g} is above {k2} {v2:g}")
        return self


class Part(Strict):
    index: count()
    width: number(0.0) | None = None
    torch: Timing | None = None
    onnxruntime: Timing | None = None


class Row(Strict):
    switch: SwitchText
    accuracy: Accuracy | None
    device_macs: Counts
    device_params: Counts
    parts: list[Part]

    @model_validator(mode="after")
    def _one_part_per_subnetwork(self) -> Row:
        n = len(parse_switch(self.switch))
        if len(self.parts) != n:
            raise ValueError(f"parts must be a list of {n} entries, one per sub-network")
        for i, part in enumerate(self.parts):
            if part.index != i:
                raise ValueError(f"part {i} is not an object with index {i}")
        return self


def _device_name(name: Any) -> str:
    if not isinstance(name, str):
        fail("not_a_name", f"{quote(name)} is not a name")
    Device(name)  # the planner's rules for a name
    return name


def _runtimes(runtimes: list[str]) -> list[str]:
    if not runtimes or any(r not in RUNTIMES for r in runtimes):
        fail("not_one_of", f"{quote(runtimes)} is not a list of {', '.join(RUNTIMES)}")
    return runtimes


class TableSchema(Strict):
    """One device's table as JSON (the module's docstring); ``format`` and ``version`` are checked first."""

    format: str
    version: int
    device: Annotated[str, BeforeValidator(_device_name)]
    host: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    source: str | None = None
    batch: count(1)
    input_shape: list[count(1)] | None = None
    warmup: count() | None = None
    repeats: count(1) | None = None
    runtimes: Annotated[list[str], AfterValidator(_runtimes)]
    measured_at: str | None = None
    switches: list[Row]

    @model_validator(mode="after")
    def _timed_once_each(self) -> TableSchema:
        if not self.switches:
            raise ValueError("switches must be a non-empty list")
        seen: set[Switch] = set()
        for i, row in enumerate(self.switches):
            for j, part in enumerate(row.parts):
                missing = [r for r in self.runtimes if getattr(part, r) is None]
                if missing:
                    raise ValueError(f"switch {i}: part {j} has no {missing[0]} timings")
            s = parse_switch(row.switch)
            if s in seen:
                raise ValueError(f"switch {s} appears twice")
            seen.add(s)
        return self


@dataclass
class LatencyTable:
    """One device's table; ``data`` is the checked JSON object."""

    device: str
    batch: int
    runtimes: tuple[str, ...]
    data: dict[str, Any]
    path: str = ""

    @property
    def model(self) -> dict[str, Any] | None:
        """The model the table was measured on (``None`` where the table does not say)."""
        model = self.data.get("model")
        return model if isinstance(model, dict) else None

    def rows(self) -> list[SwitchOption]:
        """The planner's rows (accuracy, multiply-adds, parameters) of the switches measured here."""
        return [_option(row, f"latency table {quote(self.path)}") for row in self.data["switches"]]

    def seconds(self, runtime: str, statistic: str) -> dict[Switch, tuple[float, ...]]:
        """Per switch, the ``statistic`` (``p50`` / ``p95``) seconds of each sub-network on ``runtime``."""
        if runtime not in self.runtimes:
            raise ValueError(
                f"latency table {quote(self.path)} of device {quote(self.device)} has no {runtime} timings "
                f"(it has {', '.join(self.runtimes)})"
            )
        key = f"{statistic}_s"
        return {parse_switch(r["switch"]): tuple(p[runtime][key] for p in r["parts"]) for r in self.data["switches"]}


def _option(row: dict[str, Any], where: str = "latency table") -> SwitchOption:
    keys = ("switch", "accuracy", "device_macs", "device_params")
    return SwitchOption.from_dict({k: row[k] for k in keys}, where)


def write_latency_table(path: str | os.PathLike, data: dict[str, Any]) -> LatencyTable:
    """Write one device's table (checked first, so that nothing unreadable is ever written)."""
    table = check_latency_table(json.loads(json.dumps(data)), str(path))
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
    return table


def read_latency_table(path: str | os.PathLike) -> LatencyTable:
    """One device's table from JSON (at most 16 MiB, no NaN, every value checked)."""
    return check_latency_table(read_json(path, "latency table", MAX_JSON_BYTES), str(path))


def check_latency_table(data: object, where: str) -> LatencyTable:
    """The table ``data`` stands for (:class:`TableSchema`), or ``ValueError`` naming the first thing
    wrong in it (``switches[0] parts[1] torch p95_s -1.0 is outside [0, 3600]``)."""
    w = f"latency table {quote(where)}"
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"{w} is not a {FORMAT} of version {VERSION}")
    try:
        checked = TableSchema.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"{w}: {one_line(err, sep=' ')}") from None
    return LatencyTable(checked.device, checked.batch, tuple(checked.runtimes), data, where)


def read_latency_tables(paths: Iterable[str | os.PathLike]) -> list[LatencyTable]:
    """The tables of ``paths`` (files, or folders whose ``*.json`` files are tables): one per device,
    all of the same batch size."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
        if p.is_dir() and not any(p.glob("*.json")):
            raise ValueError(f"latency table folder {quote(str(p))} holds no .json file")
    if len(files) > MAX_TABLES:
        raise ValueError(f"{len(files)} latency tables, more than {MAX_TABLES}")
    tables = [read_latency_table(f) for f in files]
    names = [t.device for t in tables]
    if len(set(names)) != len(names):
        raise ValueError(f"two latency tables for one device: {quote(names)}")
    if len({t.batch for t in tables}) > 1:
        batches = {t.device: t.batch for t in tables}
        raise ValueError(f"latency tables measured at different batch sizes: {quote(batches)}")
    if len({model_key(t.model) for t in tables if t.model}) > 1:
        models = {t.device: model_key(t.model) for t in tables if t.model}
        raise ValueError(f"latency tables measured on different models: {quote(models)}")
    return tables


MODEL_KEYS = ("name", "num_classes", "in_chans", "wide_factor")


def model_key(model: dict[str, Any] | None) -> tuple:
    """What tells one model from another in a latency table or a trained model's arguments."""
    values = ((model or {}).get(k) for k in MODEL_KEYS)
    return tuple(v if v is None or isinstance(v, (str, int, float)) else repr(v)[:80] for v in values)


def check_tables_of(tables: Sequence[LatencyTable], model: dict[str, Any], what: str) -> None:
    """Latency tables measured on ``model`` (registry arguments), else refused naming both: a table of
    another model would plan with another model's times."""
    for t in tables:
        if t.model and model_key(t.model) != model_key(model):
            raise ValueError(
                f"the latency table of device {quote(t.device)} was measured on {quote(model_key(t.model))}, "
                f"not on {what} {quote(model_key(model))}"
            )


def table_latencies(tables: Sequence[LatencyTable], runtime: str, statistic: str) -> Latencies:
    """``{device: {switch: seconds per sub-network}}`` for :func:`paradis.deploy.plan`."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic {quote(statistic)} is not one of {', '.join(STATISTICS)}")
    return {t.device: t.seconds(runtime, statistic) for t in tables}


def merged_rows(tables: Sequence[LatencyTable]) -> list[SwitchOption]:
    """The planner's rows of every switch in the tables; tables that disagree on a switch are refused."""
    rows: dict[Switch, SwitchOption] = {}
    for t in tables:
        for option in t.rows():
            known = rows.setdefault(option.switch, option)
            if known != option:
                raise ValueError(
                    f"latency tables disagree on switch {option.switch} (accuracy, multiply-adds or parameters): "
                    f"{quote(t.path)}"
                )
    return list(rows.values())

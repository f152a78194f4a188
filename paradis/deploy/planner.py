"""Planner: the switch, and the assignment of its sub-networks to devices, that maximizes accuracy
within a latency budget.

Inputs are a per-switch table (:class:`SwitchOption`: accuracy, multiply-adds and parameters of each
sub-network, optionally its measured seconds on a reference device) and the devices
(:class:`Device`: relative speed, memory for weights). A sub-network's latency on a device is its
measured seconds, else its multiply-adds over ``macs_per_second``, divided by the device's speed;
a switch's latency is that of its slowest device plus ``overhead_s`` (sending the input, fusing).
Among the switches whose assignment fits every device's memory and the budget, the most accurate
wins (ties: lower latency, then fewer devices). The assignment minimizes the slowest device's
latency, then the sum over devices (so a slow device gets a small sub-network).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationError, model_validator

from paradis.deploy.files import quote
from paradis.deploy.schema import Strict, count, number, one_line
from paradis.switch import Switch, SwitchLike, parse_switch

# Above this many candidate assignments a switch is assigned greedily (largest sub-network to the
# fastest device with room), which is exact when memory does not bind.
MAX_ENUMERATED = 200_000
MAX_NAME = 200  # characters of a device name
MAX_MEMORY = 1 << 60  # bytes of one device (an exabyte: anything above is a typo)
MAX_REASONS = 12  # switches named in a "nothing fits" error
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30}  # fmt: skip


class PlanError(ValueError):
    """No switch fits the devices and the budget; the message says why for each switch."""


@dataclass(frozen=True)
class Device:
    """A device: ``speed`` relative to the reference device (2.0 = twice as fast), ``memory`` the
    bytes it has for weights (``None``: unlimited)."""

    name: str
    speed: float = 1.0
    memory: int | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or len(self.name) > MAX_NAME:
            raise ValueError(f"device name {quote(self.name)} must be 1 to {MAX_NAME} characters")
        if any(not c.isprintable() for c in self.name):
            raise ValueError(f"device name {quote(self.name)} has control characters")
        speed = self.speed
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"device {quote(self.name)}: speed {quote(speed)} must be a positive number")
        memory = self.memory
        if memory is not None and (
            not isinstance(memory, int) or isinstance(memory, bool) or not 0 < memory <= MAX_MEMORY
        ):
            raise ValueError(f"device {quote(self.name)}: memory {quote(memory)} must be a positive number of bytes")


def parse_size(text: str) -> int:
    """``"512MB"``, ``"2GiB"``, ``"100k"``, ``"4096"`` -> bytes."""
    m = re.fullmatch(r"\s*([0-9]{1,30}\.?[0-9]{0,30})\s*([a-zA-Z]*)\s*", text)
    if m is None or m.group(2).lower() not in _UNITS:
        raise ValueError(f"memory {quote(text)} is not a size such as 512MB, 2GiB or 100k")
    size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not 1 <= size <= MAX_MEMORY:
        raise ValueError(f"memory {quote(text)} is not between 1 byte and 1 EiB")
    return int(size)


def parse_device(text: str) -> Device:
    """``NAME[:SPEED[:MEMORY]]``, e.g. ``gpu0:1.0:2GB`` or ``phone:0.25``."""
    parts = text.split(":")
    if not parts[0] or len(parts) > 3:
        raise ValueError(f"device {quote(text)}: expected NAME[:SPEED[:MEMORY]], e.g. gpu0:1.0:2GB")
    try:
        speed = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
    except ValueError:
        raise ValueError(f"device {quote(text)}: speed {quote(parts[1])} is not a number") from None
    memory = parse_size(parts[2]) if len(parts) > 2 and parts[2] else None
    return Device(parts[0], speed, memory)


def _switch(value: Any) -> Switch:
    try:
        return parse_switch(value)
    except TypeError as err:  # a JSON object or a list of lists
        raise ValueError(f"switch {quote(value, 80)} is not a number or a list of widths ({err})") from None


Counts = list[count(integral_floats=True)]  # JSON writes 1e9 for a billion
Accuracy = number(0.0, 1.0)


class SwitchRow(Strict):
    """A row of the per-switch table as JSON: numbers must be numbers (``1e9`` is accepted for an
    integer), never strings or booleans; ``top1`` is another name for ``accuracy``."""

    switch: Annotated[Any, AfterValidator(_switch)]
    accuracy: Accuracy | None = None
    top1: Accuracy | None = None
    device_macs: Counts
    device_params: Counts
    device_seconds: list[number(0.0)] | None = None

    @model_validator(mode="after")
    def _one_entry_per_subnetwork(self) -> SwitchRow:
        n = len(self.switch)
        for name in ("device_macs", "device_params", "device_seconds"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} sub-networks")
        return self


def row_error(err: ValidationError) -> str:
    """A row's first problem: ``device_macs entry -5 is outside [0, inf]``."""
    return one_line(err, item=" entry")


@dataclass(frozen=True)
class SwitchOption:
    """One row of the per-switch table. ``device_seconds``: measured seconds of each sub-network on
    the reference device (speed 1), for the batch the budget is about."""

    switch: Switch
    accuracy: float | None
    device_macs: tuple[int, ...]
    device_params: tuple[int, ...]
    device_seconds: tuple[float, ...] | None = None

    def __post_init__(self):
        try:
            SwitchRow.model_validate(self.as_dict())
        except ValidationError as err:
            raise ValueError(f"switch {self.switch}: {row_error(err)}") from None

    @classmethod
    def from_dict(cls, row: object, where: str = "table") -> SwitchOption:
        """A row ``{"switch", "accuracy" (or "top1"), "device_macs", "device_params"[, "device_seconds"]}``
        (:class:`SwitchRow`)."""
        try:
            r = SwitchRow.model_validate(row)
        except ValidationError as err:
            shown = f"{quote(row, 120)}: " if isinstance(row, dict) else ""
            raise ValueError(f"{where}: row {shown}{row_error(err)}") from None
        acc = r.accuracy if "accuracy" in r.model_fields_set else r.top1
        secs = None if r.device_seconds is None else tuple(r.device_seconds)
        return cls(r.switch, acc, tuple(r.device_macs), tuple(r.device_params), secs)

    def as_dict(self) -> dict:
        return {
            "switch": str(self.switch),
            "accuracy": self.accuracy,
            "device_macs": list(self.device_macs),
            "device_params": list(self.device_params),
            "device_seconds": None if self.device_seconds is None else list(self.device_seconds),
        }


@dataclass(frozen=True)
class Assignment:
    index: int  # the sub-network
    width: float
    device: str
    seconds: float
    macs: int
    weight_bytes: int


@dataclass
class Plan:
    switch: Switch
    accuracy: float
    latency_s: float
    budget_s: float
    assignment: list[Assignment]
    cost_source: str
    considered: list[tuple[Switch, float | None, float | None, str]] = field(default_factory=list)

    def device_of(self, index: int) -> str:
        return self.assignment[index].device

    def explain(self) -> str:
        """Why this switch, on which device each sub-network runs, and what the others lacked."""
        lines = [
            f"chosen: switch {self.switch} (top-1 {100 * self.accuracy:.2f} %), latency "
            f"{1e3 * self.latency_s:.3f} ms within the budget of {1e3 * self.budget_s:.3f} ms "
            f"(costs {self.cost_source}); it is the most accurate switch that fits.",
        ]
        for a in self.assignment:
            lines.append(
                f"  sub-network {a.index} (width {a.width:g}, {a.macs / 1e6:.2f} MMACs, "
                f"{a.weight_bytes / 1e6:.3f} MB) -> {a.device}: {1e3 * a.seconds:.3f} ms"
            )
        others = [c for c in self.considered if c[0] != self.switch]
        if others:
            lines.append("other switches:")
            for s, acc, lat, why in others:
                acc_text = "unknown accuracy" if acc is None else f"top-1 {100 * acc:.2f} %"
                lat_text = "" if lat is None else f", {1e3 * lat:.3f} ms"
                lines.append(f"  {s} ({acc_text}{lat_text}): {why}")
        return "\n".join(lines)


# per device name, per switch: the measured seconds of each of its sub-networks on that device
Latencies = Mapping[str, Mapping[Switch, Sequence[float]]]


def _assign(
    option: SwitchOption, devices: Sequence[Device], cost: Sequence[Sequence[float]], bytes_per_param: int
) -> tuple[list[int] | None, str]:
    """Device index for each sub-network minimizing (slowest, sum) latency, memory permitting;
    ``cost[i][d]``: seconds of sub-network ``i`` on device ``d`` (``inf``: that device cannot run it)."""
    n, k = len(devices), len(option.switch)
    need = [p * bytes_per_param for p in option.device_params]
    room = [[dev.memory is None or need[i] <= dev.memory for dev in devices] for i in range(k)]
    fits = [[math.isfinite(cost[i][d]) and room[i][d] for d in range(n)] for i in range(k)]
    for i in range(k):
        if not any(math.isfinite(c) for c in cost[i]):
            return None, f"no device has a latency for sub-network {i} (not in their latency tables)"
        if not any(fits[i]):
            return None, f"sub-network {i} needs {need[i] / 1e6:.3f} MB, more than any device has"
    if math.perm(n, k) <= MAX_ENUMERATED:
        best, best_key = None, None
        for perm in itertools.permutations(range(n), k):
            if all(fits[i][d] for i, d in enumerate(perm)):
                lat = [cost[i][d] for i, d in enumerate(perm)]
                if best_key is None or (max(lat), sum(lat)) < best_key:
                    best, best_key = list(perm), (max(lat), sum(lat))
        if best is not None:
            return best, ""
        timed = [d for d in range(n) if all(math.isfinite(cost[i][d]) for i in range(k))]
        if len(timed) < k and all(dev.memory is None for dev in devices):  # the latencies, not the memory
            untimed = ", ".join(devices[d].name for d in range(n) if d not in timed)
            return None, f"{k} sub-networks need {k} devices with a latency for them; none for: {untimed}"
        return None, "no assignment fits every sub-network into a device's memory"
    free = sorted(range(n), key=lambda d: -devices[d].speed)
    best = [0] * k
    for i in sorted(range(k), key=lambda i: -max(c for c in cost[i] if math.isfinite(c))):
        left = [d for d in free if fits[i][d]]
        if not left:
            return None, f"no device left with memory for sub-network {i} ({need[i] / 1e6:.3f} MB)"
        best[i] = min(left, key=lambda d: cost[i][d])
        free.remove(best[i])
    return best, ""


def _costs(
    option: SwitchOption, devices: Sequence[Device], macs_per_second: float | None, latencies: Latencies | None
) -> tuple[list[list[float]], str]:
    """``cost[i][d]`` of ``option`` and where the costs come from."""
    s = option.switch
    if latencies is not None:
        by_device = [latencies.get(d.name, {}).get(s) for d in devices]
        cost = [[math.inf if t is None else float(t[i]) for t in by_device] for i in range(len(s))]
        return cost, "measured on each device by profile-devices"
    if option.device_seconds is not None:
        seconds, source = list(option.device_seconds), "measured"
    elif macs_per_second is not None:
        seconds, source = [m / macs_per_second for m in option.device_macs], "profiled"
    else:
        raise PlanError(f"switch {s} has no measured seconds; give macs_per_second to cost it from its MACs")
    return [[t / d.speed for d in devices] for t in seconds], source


def _option_plan(
    option: SwitchOption,
    devices: Sequence[Device],
    budget_s: float,
    cost: list[list[float]],
    overhead_s: float,
    bytes_per_param: int,
) -> tuple[Plan | None, float | None, str]:
    """The plan of one switch (``None`` when it does not fit), its latency and why."""
    s = option.switch
    where, why = _assign(option, devices, cost, bytes_per_param)
    if where is None:
        return None, None, why
    parts = [
        Assignment(
            i,
            s.widths[i],
            devices[d].name,
            cost[i][d],
            option.device_macs[i],
            option.device_params[i] * bytes_per_param,
        )
        for i, d in enumerate(where)
    ]
    latency = max(a.seconds for a in parts) + overhead_s
    if latency > budget_s:
        return None, latency, f"over the budget ({1e3 * latency:.3f} ms)"
    return Plan(s, option.accuracy or 0.0, latency, budget_s, parts, ""), latency, "fits, less accurate"


def plan(
    devices: Sequence[Device],
    budget_s: float,
    table: Iterable[SwitchOption],
    *,
    macs_per_second: float | None = None,
    overhead_s: float = 0.0,
    bytes_per_param: int = 4,
    latencies: Latencies | None = None,
) -> Plan:
    """The most accurate switch that runs within ``budget_s`` on ``devices``, and its assignment.

    ``latencies`` (from per-device latency tables): the measured seconds of every sub-network on each
    device by name, used instead of the table's seconds or multiply-adds and the devices' speeds."""
    devices = list(devices)
    if not devices:
        raise PlanError("no devices given")
    if len({d.name for d in devices}) != len(devices):
        raise PlanError(f"device names must be distinct: {quote([d.name for d in devices])}")
    _check_plan_numbers(budget_s, macs_per_second, overhead_s, bytes_per_param)
    considered: list[tuple[Switch, float | None, float | None, str]] = []
    feasible: list[Plan] = []
    for option in table:
        s = option.switch
        if option.accuracy is None:
            considered.append((s, None, None, "no accuracy in the table"))
            continue
        if len(s) > len(devices):
            considered.append((s, option.accuracy, None, f"needs {len(s)} devices, {len(devices)} given"))
            continue
        cost, source = _costs(option, devices, macs_per_second, latencies)
        chosen, latency, why = _option_plan(option, devices, budget_s, cost, overhead_s, bytes_per_param)
        considered.append((s, option.accuracy, latency, why))
        if chosen is not None:
            chosen.cost_source = source
            feasible.append(chosen)
    if not feasible:
        reasons = "; ".join(f"{s}: {why}" for s, _, _, why in considered[:MAX_REASONS]) or "the table is empty"
        if len(considered) > MAX_REASONS:
            reasons += f"; and {len(considered) - MAX_REASONS} more"
        raise PlanError(f"no switch fits {len(devices)} device(s) within {1e3 * budget_s:.3f} ms ({reasons})")
    best = min(feasible, key=lambda p: (-p.accuracy, p.latency_s, len(p.switch)))
    for i, (s, acc, lat, why) in enumerate(considered):
        if s == best.switch:
            considered[i] = (s, acc, lat, "chosen")
        elif why == "fits, less accurate" and acc == best.accuracy:
            considered[i] = (s, acc, lat, "fits, as accurate but slower or on more devices")
    best.considered = considered
    _check_possible(best)
    return best


def _check_plan_numbers(budget_s: object, macs_per_second: object, overhead_s: object, bytes_per_param: object):
    """The planner's numbers: a positive finite budget and rate, a finite overhead >= 0."""
    checks = [
        (budget_s, "latency budget", "a positive number of seconds", False),
        (macs_per_second, "macs_per_second", "a positive number", True),
        (overhead_s, "overhead", "a number of seconds >= 0", False),
    ]
    for value, what, must, optional in checks:
        if value is None and optional:
            continue
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        ok = ok and (value >= 0 if what == "overhead" else value > 0)
        if not ok:
            raise PlanError(f"{what} {quote(value)} must be {must}")
    if isinstance(bytes_per_param, bool) or not isinstance(bytes_per_param, int) or bytes_per_param < 1:
        raise PlanError(f"bytes_per_param {quote(bytes_per_param)} must be a positive integer")


def _check_possible(p: Plan) -> None:
    """A plan never printed unless it is possible: accuracy in [0, 1], latencies finite, within budget."""
    seconds = [a.seconds for a in p.assignment]
    if not (
        0.0 <= p.accuracy <= 1.0
        and all(math.isfinite(t) and t >= 0 for t in seconds)
        and math.isfinite(p.latency_s)
        and 0 <= p.latency_s <= p.budget_s
        and len({a.device for a in p.assignment}) == len(p.assignment) == len(p.switch)
    ):
        raise PlanError(f"internal check failed: impossible plan for switch {p.switch} ({p.latency_s!r} s)")


def best_fallback(table: Iterable[SwitchOption], devices: int, available: Iterable[SwitchLike] | None = None):
    """The most accurate switch (of known accuracy) with at most ``devices`` sub-networks, or ``None``;
    ``available`` restricts the choice (e.g. to switches with BN statistics)."""
    allowed = None if available is None else {parse_switch(s) for s in available}
    fits = [
        o
        for o in table
        if o.accuracy is not None and len(o.switch) <= devices and (allowed is None or o.switch in allowed)
    ]
    if not fits:
        return None
    return max(fits, key=lambda o: (o.accuracy, -len(o.switch))).switch

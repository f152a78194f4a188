"""The planner's per-switch table (:class:`~paradis.deploy.planner.SwitchOption` rows): read from JSON
(:func:`read_table`, each row a strict :class:`~paradis.deploy.planner.SwitchRow`), or measured from a
trained model (:func:`switch_table`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from paradis.costs import profile
from paradis.deploy.files import MAX_JSON_BYTES, quote, read_json
from paradis.deploy.planner import SwitchOption
from paradis.deploy.timing import measure_latency
from paradis.deploy.trained import TrainedModel
from paradis.switch import Switch, SwitchLike

MAX_ROWS = 10_000  # switches in one table


def read_table(path: str | Path) -> list[SwitchOption]:
    """A JSON list of rows ``{"switch", "accuracy" (or "top1"), "device_macs", "device_params"}``, read
    without running anything (at most 16 MiB, no NaN); every value checked; one switch per row."""
    where = f"table {quote(str(path))}"
    rows = read_json(path, "table", MAX_JSON_BYTES)
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{where} must be a non-empty JSON list of rows, not {quote(rows, 80)}")
    if len(rows) > MAX_ROWS:
        raise ValueError(f"{where} has {len(rows)} rows, more than {MAX_ROWS}")
    table = [SwitchOption.from_dict(r, f"{where}, row {i}") for i, r in enumerate(rows)]
    seen: set[Switch] = set()
    for option in table:
        if option.switch in seen:
            raise ValueError(f"{where}: switch {option.switch} has two rows")
        seen.add(option.switch)
    return table


def switch_table(
    trained: TrainedModel,
    switches: Sequence[SwitchLike] | None = None,
    *,
    measure_batch: int | None = None,
) -> list[SwitchOption]:
    """The planner's table: accuracy (when known), per-device multiply-adds and parameters of each
    switch (default: every switch with BN statistics), and with ``measure_batch`` the median seconds
    of each sub-network on this machine, with the current torch thread count, for that batch size."""
    model = trained.model.eval()
    chosen = [model.resolve(s) for s in switches] if switches else model.bn_switches()
    rows = []
    for s in chosen:
        prof = profile(model, s, trained.input_size)
        seconds = None
        if measure_batch:
            x = torch.randn(measure_batch, *trained.input_size)
            nets = model.extract(s).subnets
            with torch.inference_mode():
                seconds = tuple(measure_latency(lambda net=net, x=x: net(x)) for net in nets)
        rows.append(SwitchOption(s, trained.accuracy.get(str(s)), prof.device_macs, prof.device_params, seconds))
    return rows

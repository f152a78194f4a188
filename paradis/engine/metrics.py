"""Metric names, in one place: what a run reports each epoch and how a name reads back.

``loss`` (sum over switches), ``loss/<slug>`` per trained switch, ``<measure>/<slug>`` per evaluated
switch (``acc`` a fraction, ``psnr`` in dB, ``top5``), ``<measure>/target`` with ``macs/target`` and
``device_macs/target`` for the switch a deployment would use, ``psnr/bicubic`` for the baseline, and
``lr``, ``epoch_seconds``, ``samples_per_second``, ``eval_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from paradis.switch import Switch

TARGET = "target"
MEASURES = ("acc", "psnr", "top5")
COST_PREFIXES = ("macs/", "device_macs/")
# cpu_seconds (the trial process's CPU time) and threads (its intra-op threads) come from a study's trial
SCALARS = ("epoch", "loss", "lr", "epoch_seconds", "samples_per_second", "eval_seconds", "cpu_seconds", "threads")
BASELINE = "psnr/bicubic"


def loss_key(switch: Switch) -> str:
    return f"loss/{switch.slug}"


def measure_key(measure: str, switch: Switch | str) -> str:
    return f"{measure}/{switch if isinstance(switch, str) else switch.slug}"


def is_tracked(key: str) -> bool:
    """Whether a reported key is a metric a tracking store keeps (``epoch`` is its step)."""
    prefixes = (*(f"{m}/" for m in MEASURES), "loss/", *COST_PREFIXES)
    return (key in SCALARS and key != "epoch") or key.startswith(prefixes)


def measures_by_switch(metrics: Mapping[str, float], measure: str = "acc") -> dict[str, float]:
    """``{"[0.5, 0.5]": 0.89, ...}`` from metrics named ``<measure>/<slug>`` (``target`` and names
    that are no switch left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        prefix, _, slug = key.partition("/")
        if prefix != measure or slug in (TARGET, "bicubic"):
            continue
        try:
            out[str(Switch.from_slug(slug))] = float(value)
        except ValueError:
            continue
    return out


def table_metrics(rows: Iterable, measure: str, target: Switch) -> dict[str, float]:
    """The metrics of an evaluation table (:class:`paradis.engine.evaluation.SwitchResult` rows)."""
    metrics: dict[str, float] = {}
    for row in rows:
        s = Switch.parse(row.switch)
        metrics[measure_key(measure, s)] = row.score
        if row.top5 is not None:
            metrics[measure_key("top5", s)] = row.top5
        if row.baseline_psnr is not None:
            metrics[BASELINE] = row.baseline_psnr
        if s == target:
            metrics[measure_key(measure, TARGET)] = row.score
            metrics["device_macs/target"] = row.max_device_macs
            metrics["macs/target"] = row.macs
    return metrics

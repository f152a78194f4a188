"""Learning curves: each trial's per-epoch training loss and test measure per switch, the teacher's
curve (the widest switch evaluated: ``[1.2]`` where it is trained) drawn for every trial, and how much
it still gained over the last quarter of training, the study's verdict on convergence."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from orchestration.report.study import TrialRecord, code_span, inline_text
from paradis.engine.metrics import MEASURES

# The teacher "has converged" when its test measure gained less than this over the last quarter of
# the epochs (points of accuracy, or dB of PSNR): later epochs would not change a comparison by more.
FLAT_POINTS = 1.0


def curve_rows(frame_rows: Iterable[dict[str, Any]]) -> list[dict[str, float]]:
    """Per-epoch reports (Tune's metrics dataframe as records) reduced to ``epoch`` and the
    ``loss/<slug>`` and ``<measure>/<slug>`` values; reports without an epoch are left out."""
    keep = ("loss/", *(f"{m}/" for m in MEASURES))
    out: dict[int, dict[str, float]] = {}
    for row in frame_rows:
        epoch = row.get("epoch")
        if not isinstance(epoch, (int, float)) or isinstance(epoch, bool) or math.isnan(epoch):
            continue
        values = {
            k: float(v)
            for k, v in row.items()
            if k.startswith(keep) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        out.setdefault(int(epoch), {}).update(values)
    return [{"epoch": e, **out[e]} for e in sorted(out)]


def teacher_key(curve: Sequence[dict[str, float]]) -> tuple[str, str] | None:
    """``(measure key, loss key)`` of a trial's teacher: the widest switch it trains (one whose training
    loss is logged; an individual model's only switch). A wider switch that is only evaluated (the
    ``[1.2]`` of a study without the wide teacher) says nothing about convergence; it is the teacher only
    where no switch logs a loss."""
    from paradis.switch import Switch

    keys = {k for row in curve for k in row}
    best = None
    for key in keys:
        measure, _, slug = key.partition("/")
        if measure not in ("acc", "psnr"):
            continue
        try:
            total = Switch.from_slug(slug).total
        except ValueError:
            continue  # target, bicubic
        rank = (f"loss/{slug}" in keys, total)
        if best is None or rank > best[0]:
            best = (rank, key, f"loss/{slug}")
    return (best[1], best[2]) if best else None


def late_gain(curve: Sequence[dict[str, float]], key: str) -> float | None:
    """What ``key`` gained over the last quarter of the epochs (in points for accuracy)."""
    points = [(row["epoch"], row[key]) for row in curve if key in row]
    if len(points) < 2:
        return None
    last_epoch, last = points[-1]
    start = last_epoch - max(1, round(last_epoch / 4))
    before = [v for e, v in points if e <= start]
    if not before:
        return None
    scale = 100.0 if key.startswith("acc/") else 1.0
    return scale * (last - before[-1])


def convergence(records: Sequence[TrialRecord]) -> dict[str, Any]:
    """Each trial's teacher gain over the last quarter of training, the worst, and the verdict."""
    gains: dict[str, dict[str, Any]] = {}
    for r in records:
        key = teacher_key(r.curves)
        if key is not None:
            gains[r.name] = {"switch": key[0], "gain": late_gain(r.curves, key[0])}
    measured = {n: g for n, g in gains.items() if g["gain"] is not None}
    worst = max(measured, key=lambda n: measured[n]["gain"]) if measured else None
    if not gains:
        verdict = "no learning curves"
    elif worst is None:
        verdict = "too few epochs to tell"
    else:
        verdict = "flattened" if measured[worst]["gain"] < FLAT_POINTS else "still improving"
    return {"trials": gains, "worst": worst, "threshold": FLAT_POINTS, "verdict": verdict}


def convergence_line(summary: dict[str, Any]) -> str:
    worst = summary.get("worst")
    verdict = inline_text(summary["verdict"])
    if worst is None:
        return f"Learning curves: {verdict}."
    trial = summary["trials"][worst]
    unit = "dB" if trial["switch"].startswith("psnr/") else "points"
    return (
        f"Learning curves: the teacher's test measure (the widest switch each trial trains) gained at most "
        f"{trial['gain']:+.2f} {unit} over the last quarter of the epochs ({inline_text(worst)}, "
        f"{code_span(trial['switch'])}): **{verdict}** (the rule: flattened when every trial gains under "
        f"{summary['threshold']:g} {'point' if unit == 'points' and summary['threshold'] == 1 else unit})."
    )


def curves_table(records: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """One row per trial, epoch and metric (the ``study/learning_curves.json`` table)."""
    return [
        {"trial": r.name, "epoch": row["epoch"], "metric": k, "value": v}
        for r in records
        for row in r.curves
        for k, v in row.items()
        if k != "epoch"
    ]


def curves_figure(records: Sequence[TrialRecord], title: str = ""):
    """Each trial's teacher: its test measure and training loss by epoch, a line per trial."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    for r in records:
        key = teacher_key(r.curves)
        if key is None:
            continue
        for ax, k in ((top, key[0]), (bottom, key[1])):
            points = [(row["epoch"], row[k]) for row in r.curves if k in row]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=f"{r.name} ({k})")
    top.set_ylabel("test measure of the teacher")
    bottom.set_ylabel("its training loss")
    bottom.set_xlabel("epoch")
    top.set_title(title or "learning curves of each trial's teacher (its widest switch)")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig


def parse_convergence(data: Any) -> dict[str, Any] | None:
    """A ``study/convergence.json`` read back from a store, if it has the shape :func:`convergence`
    writes (``None`` otherwise: the report shows no verdict rather than trust it)."""
    if not isinstance(data, dict) or not isinstance(data.get("trials"), dict):
        return None
    threshold = data.get("threshold")
    if not isinstance(data.get("verdict"), str) or not isinstance(threshold, (int, float)):
        return None
    if isinstance(threshold, bool) or not math.isfinite(threshold) or not 0 <= threshold <= 100:
        return None
    for trial in data["trials"].values():
        gain = trial.get("gain") if isinstance(trial, dict) else None
        if not isinstance(trial, dict) or not isinstance(trial.get("switch"), str):
            return None
        if gain is not None and (not isinstance(gain, (int, float)) or not math.isfinite(gain) or abs(gain) > 1e4):
            return None
    worst = data.get("worst")
    if worst is not None and (worst not in data["trials"] or data["trials"][worst].get("gain") is None):
        return None
    return data

"""The study table (a row per trial, a column per switch, as the paper's Tables 1, 4 and 5) and the
plot of accuracy against multiply-adds with the "distributed" curve (the paper's Figures 4 and 5)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paradis.switch import parse_switch


@dataclass
class TrialRecord:
    trial_id: str
    name: str
    label: str  # the method as the paper names it
    params: dict[str, Any]  # the searched values
    rows: list[dict[str, Any]] = field(default_factory=list)  # paradis.engine.evaluation.SwitchResult dicts
    status: str = "TERMINATED"
    error: str | None = None
    front: str | None = None  # the front the trial selected (JSON of orchestration.fronts.Front)
    metrics: dict[str, float] = field(default_factory=dict)  # its last numeric metrics
    curves: list[dict[str, float]] = field(default_factory=list)  # per epoch: epoch, loss/..., acc/...
    epochs: int | None = None  # epochs trained
    planned: int | None = None  # epochs its configuration asked for
    ended: str = "finished"  # what ended it: finished, ASHA, budget, not started, failure, interrupted
    wall_s: float | None = None

    @property
    def complete(self) -> bool:
        """Trained as its configuration asked: a seed that may be averaged with the others."""
        return self.status == "TERMINATED" and self.ended == "finished"


def how_it_ended(record: TrialRecord) -> tuple[str, str, str]:
    """The study table's last cells: epochs trained (of planned), what ended the trial, its wall time."""
    epochs = "" if record.epochs is None else f"{record.epochs}" + (f"/{record.planned}" if record.planned else "")
    wall = "" if record.wall_s is None else f"{record.wall_s:.0f} s"
    return epochs, record.ended, wall


def markdown_row(cells: Sequence[Any]) -> str:
    """A Markdown table row whose cells cannot break out of it: names read from a store may hold a
    newline, a ``|`` or HTML (``<script>``), none of which reaches the page as such."""

    def cell(value: Any) -> str:
        text = " ".join(str(value).split())
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("](", "]\\(")

    return "| " + " | ".join(cell(c) for c in cells) + " |"


def inline_text(value: Any) -> str:
    """A value read from a store or a file, as running Markdown text that cannot start a heading, a link,
    a code span, a table cell or HTML: one line (no heading can start), those characters escaped."""
    text = " ".join(str(value).split()).replace("&", "&amp;")
    return re.sub(r"([\\`\[\]|<>])", r"\\\1", text)


def code_span(value: Any) -> str:
    """A value read from a store or a file as an inline code span: one line, no backtick to close it
    early (inside a code span nothing else is Markdown or HTML)."""
    return "`" + " ".join(str(value).split()).replace("`", "'") + "`"


def _switch_order(switches) -> list[str]:
    parsed = {str(parse_switch(s)) for s in switches}
    return sorted(parsed, key=lambda s: (-parse_switch(s).total, -parse_switch(s).widths[0], len(parse_switch(s))))


def columns(records: Sequence[TrialRecord]) -> list[str]:
    """Switch columns: every switch evaluated directly, and every ParaDiS switch that a US or slimmable
    width was matched to."""
    names = set()
    for r in records:
        for row in r.rows:
            if row.get("matches"):
                names.update(row["matches"].split("; "))
            else:
                names.add(row["switch"])
    return _switch_order(names)


def score(row: dict[str, Any]) -> float | None:
    """A row's measure: PSNR (dB) for super-resolution rows, else top-1 accuracy (a fraction)."""
    return row["psnr"] if row.get("psnr") is not None else row.get("top1")


def is_sr(records: Sequence[TrialRecord]) -> bool:
    """Whether the study measures PSNR (super-resolution) rather than accuracy."""
    return any(row.get("psnr") is not None for r in records for row in r.rows)


def bicubic_baseline(records: Sequence[TrialRecord]) -> float | None:
    """The bicubic-upsampling PSNR the super-resolution rows report beside them."""
    return next((row["baseline_psnr"] for r in records for row in r.rows if row.get("baseline_psnr")), None)


def cell(record: TrialRecord, switch: str) -> tuple[float | None, str | None]:
    """Accuracy (or PSNR) of ``switch`` in a trial, or of the width matched to it (with that width)."""
    for row in record.rows:
        if row["switch"] == switch and not row.get("matches"):
            return score(row), None
    for row in record.rows:
        if row.get("matches") and switch in row["matches"].split("; "):
            return score(row), row["switch"]
    for row in record.rows:
        if row["switch"] == switch:
            return score(row), None
    return None, None


def _trained(record: TrialRecord, switch: str) -> bool:
    return any(row["switch"] == switch and row.get("trained", True) for row in record.rows)


def param_keys(records: Sequence[TrialRecord]) -> list[str]:
    keys: list[str] = []
    for r in records:
        keys += [k for k in r.params if k not in keys]
    return keys


def study_rows(records: Sequence[TrialRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """Flat rows for CSV and ``mlflow.log_table``: trial, method, params, ``acc <switch>`` and
    ``matched <switch>`` columns."""
    switches = columns(records)
    keys = param_keys(records)
    measure = "psnr" if is_sr(records) else "acc"
    header = ["trial", "method", *keys, "status"]
    header += [f"{measure} {s}" for s in switches] + [f"matched {s}" for s in switches]
    header += ["epochs", "planned epochs", "ended", "wall_s"]
    out = []
    for r in records:
        row: dict[str, Any] = {"trial": r.name, "method": r.label, "status": r.status}
        row.update({"epochs": r.epochs, "planned epochs": r.planned, "ended": r.ended, "wall_s": r.wall_s})
        row.update({k: _fmt_param(r.params.get(k)) for k in keys})
        for s in switches:
            acc, matched = cell(r, s)
            row[f"{measure} {s}"] = acc
            row[f"matched {s}"] = matched
        out.append(row)
    return header, out


def _fmt_param(v: Any) -> Any:
    return v if isinstance(v, (int, float, str)) or v is None else str(v)


def study_csv(records: Sequence[TrialRecord]) -> str:
    header, rows = study_rows(records)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header)
    w.writeheader()
    for row in rows:
        w.writerow(row)
    return buf.getvalue()


def study_markdown(records: Sequence[TrialRecord], title: str = "") -> str:
    switches = columns(records)
    keys = param_keys(records)
    sr = is_sr(records)
    head = ["trial", "method", *keys] + [f"{s}" for s in switches] + ["epochs", "ended", "wall"]
    lines = ([f"**{title}**", ""] if title else []) + [markdown_row(head)]
    lines.append("|" + "|".join(["---"] * (2 + len(keys)) + ["---:"] * len(switches) + ["---:", "---", "---:"]) + "|")
    # the cost row: multiply-adds of each switch (total / busiest device), from the first trial having it
    cost = []
    for s in switches:
        found = next((row for r in records for row in r.rows if row["switch"] == s), None)
        cost.append("" if found is None else f"{found['macs'] / 1e6:.1f} / {found['max_device_macs'] / 1e6:.1f}")
    lines.append("| MMACs (total / per device) | | " + " | " * len(keys) + " | ".join(cost) + " | | | |")
    for r in records:
        cells = [r.name, r.label + ("" if r.status == "TERMINATED" else f" ({r.status})")]
        cells += [str(_fmt_param(r.params.get(k, ""))) for k in keys]
        for s in switches:
            acc, matched = cell(r, s)
            text = "N/A" if acc is None else (f"{acc:.2f}" if sr else f"{100 * acc:.2f}")
            if acc is not None and not matched and not _trained(r, s):
                text = f"*{text}*"
            if matched and matched != s:
                text += f" ({matched.strip('[]')})"
            cells.append(text)
        lines.append(markdown_row([*cells, *how_it_ended(r)]))
    measure = "PSNR (dB, Y channel, border = scale)" if sr else "Top-1 accuracy (%)"
    lines += [
        "",
        f"{measure}. *Italics*: a switch never trained. (w): the single width whose "
        "multiply-adds are closest to the column's switch (US and slimmable rows).",
    ]
    baseline = bicubic_baseline(records)
    if sr and baseline is not None:
        lines.append(f"Bicubic upsampling on the same images: {baseline:.2f} dB.")
    return "\n".join(lines)


def _equal_widths(switch: str) -> bool:
    s = parse_switch(switch)
    return len(set(s.widths)) == 1 and s.total <= 1.0


def study_plot(records: Sequence[TrialRecord], path: str | Path, title: str = "", metric: str = "top-1") -> Path:
    """:func:`study_figure` written to ``path``."""
    import matplotlib.pyplot as plt

    fig = study_figure(records, title, metric)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def new_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(8, 5.5), dpi=110)


def study_figure(records: Sequence[TrialRecord], title: str = "", metric: str = "top-1"):
    """Accuracy against total multiply-adds per trial (solid), and against the busiest device's
    multiply-adds (dashed: the paper's "distributed" curve). Filled squares: trained switches;
    hollow circles: never trained."""
    import matplotlib.pyplot as plt

    fig, ax = new_figure()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    sr = is_sr(records)

    def value(row: dict[str, Any]) -> float:  # PSNR in dB, or accuracy in %
        return score(row) if sr else 100 * score(row)

    for i, r in enumerate(records):
        rows = [row for row in r.rows if score(row) is not None]
        if not rows:
            continue
        color = colors[i % len(colors)]
        rows.sort(key=lambda row: row["macs"])
        x = [row["macs"] / 1e6 for row in rows]
        y = [value(row) for row in rows]
        ax.plot(x, y, "-", color=color, label=f"{r.name}: {r.label}", alpha=0.9)
        for row, xi, yi in zip(rows, x, y):
            trained = row.get("trained", True)
            ax.plot(xi, yi, "s" if trained else "o", color=color, mfc=color if trained else "white", ms=6)
        # the paper's "distributed" curve: equal-width switches up to [1.0] ([4x0.25], [0.5, 0.5], [1.0])
        equal = [row for row in rows if _equal_widths(row["switch"])]
        multi = sorted(equal, key=lambda row: row["max_device_macs"])
        if len(multi) > 1:
            ax.plot(
                [row["max_device_macs"] / 1e6 for row in multi],
                [value(row) for row in multi],
                "--",
                color=color,
                alpha=0.7,
                label=f"{r.name} distributed",
            )
    baseline = bicubic_baseline(records) if sr else None
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle=":", label=f"bicubic ({baseline:.2f} dB)")
    ax.set_xscale("log")
    ax.set_xlabel("MMACs (solid: total; dashed: per device)")
    ax.set_ylabel("PSNR (dB)" if sr else f"{metric} accuracy (%)")
    ax.set_title(title or ("PSNR" if sr else "accuracy") + " against multiply-adds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig

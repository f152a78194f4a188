"""Repeated seeds: a study's trials grouped by configuration, each switch's mean ± standard deviation
over seeds (and n), and the paired difference of every variant to a reference variant with its 95 %
interval (Student's t over the seeds), so that a finding can be told from noise."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestration.report.study import TrialRecord, cell, columns, is_sr, new_figure, score


@dataclass
class Group:
    """The trials of one configuration (its seeds)."""

    name: str
    label: str
    params: dict
    records: list[TrialRecord] = field(default_factory=list)

    def values(self, switch: str) -> list[float]:
        """The switch's measure of every seed, in the order of the repeat index."""
        out = []
        for r in sorted(self.records, key=lambda r: r.params.get("repeat", 0)):
            row = next((row for row in r.rows if row["switch"] == switch and row.get("scores")), None)
            if row is not None:
                out += list(row["scores"])
                continue
            value, _ = cell(r, switch)
            if value is not None:
                out.append(value)
        return out


def groups(records: Sequence[TrialRecord]) -> list[Group]:
    """Finished trials grouped by their configuration (every searched value but the repeat)."""
    out: dict[str, Group] = {}
    for r in records:
        if r.status != "TERMINATED":
            continue
        params = {k: v for k, v in r.params.items() if k != "repeat"}
        key = repr(sorted(params.items(), key=str))
        name = params.get("variant") or r.name.split("-seed")[0]
        out.setdefault(key, Group(str(name), r.label, params)).records.append(r)
    return list(out.values())


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, sd, n


def interval95(values: Sequence[float]) -> tuple[float, float, float]:
    """The mean and its two-sided 95 % interval (Student's t with n - 1 degrees of freedom)."""
    from scipy.stats import t as student_t

    mean, sd, n = mean_sd(values)
    if n < 2:
        return mean, math.nan, math.nan
    half = float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _fmt(value: float, sr: bool) -> str:
    return f"{value:.2f}" if sr else f"{100 * value:.2f}"


def summary_markdown(records: Sequence[TrialRecord], title: str = "") -> str:
    """A row per configuration, a column per switch: mean ± sd over seeds (n)."""
    switches, sr, gs = columns(records), is_sr(records), groups(records)
    head = ["configuration", "method", *switches]
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * len(switches)) + "|")
    for g in gs:
        cells = [g.name, g.label]
        for s in switches:
            vals = g.values(s)
            if not vals:
                cells.append("N/A")
                continue
            mean, sd, n = mean_sd(vals)
            cells.append(f"{_fmt(mean, sr)} ± {_fmt(sd, sr)} ({n})")
        lines.append("| " + " | ".join(cells) + " |")
    unit = "PSNR (dB)" if sr else "Top-1 accuracy (%)"
    lines += ["", f"{unit}: mean ± standard deviation over seeds (number of seeds)."]
    return "\n".join(lines)


def summary_rows(records: Sequence[TrialRecord]) -> list[dict]:
    """Every configuration and switch with its mean, sd, n and every seed's value."""
    rows = []
    for g in groups(records):
        for s in columns(records):
            vals = g.values(s)
            if vals:
                mean, sd, n = mean_sd(vals)
                rows.append({"configuration": g.name, "switch": s, "mean": mean, "sd": sd, "n": n, "values": vals})
    return rows


def paired_differences(records: Sequence[TrialRecord], reference: str) -> list[dict]:
    """Each other configuration minus ``reference``, per switch, paired by seed: the mean difference,
    its 95 % interval and n (pairs where both have a value)."""
    gs = {g.name: g for g in groups(records)}
    if reference not in gs:
        return []
    ref, out = gs[reference], []
    for name, g in gs.items():
        if name == reference:
            continue
        for s in columns(records):
            a, b = g.values(s), ref.values(s)
            diffs = [x - y for x, y in zip(a, b)]
            if diffs:
                mean, lo, hi = interval95(diffs)
                out.append(
                    {
                        "configuration": name,
                        "reference": reference,
                        "switch": s,
                        "diff": mean,
                        "lo": lo,
                        "hi": hi,
                        "n": len(diffs),
                    }
                )
    return out


def compare_markdown(diffs: list[dict], sr: bool, title: str = "") -> str:
    unit = "dB" if sr else "points"
    lines = ([f"**{title}**", ""] if title else []) + [
        f"Paired difference to {diffs[0]['reference']!r} per switch ({unit}; 95 % interval over seeds, n pairs):",
        "",
        "| configuration | switch | difference | 95 % interval | n |",
        "|---|---|---:|---|---:|",
    ]
    k = 1 if sr else 100
    for d in diffs:
        interval = "n/a" if math.isnan(d["lo"]) else f"[{k * d['lo']:+.2f}, {k * d['hi']:+.2f}]"
        lines.append(f"| {d['configuration']} | {d['switch']} | {k * d['diff']:+.2f} | {interval} | {d['n']} |")
    return "\n".join(lines)


def summary_figure(records: Sequence[TrialRecord], title: str = ""):
    """Each configuration's mean measure against multiply-adds, with error bars of one sd."""
    fig, ax = new_figure()
    sr = is_sr(records)
    for g in groups(records):
        points = []
        for s in columns(records):
            vals = g.values(s)
            row = next(
                (row for r in g.records for row in r.rows if row["switch"] == s and score(row) is not None), None
            )
            if vals and row is not None:
                mean, sd, _ = mean_sd(vals)
                k = 1 if sr else 100
                points.append((row["macs"] / 1e6, k * mean, k * sd))
        points.sort()
        if points:
            ax.errorbar(
                [p[0] for p in points],
                [p[1] for p in points],
                yerr=[p[2] for p in points],
                marker="s",
                capsize=3,
                label=f"{g.name}: {g.label}",
            )
    ax.set_xscale("log")
    ax.set_xlabel("MMACs")
    ax.set_ylabel("PSNR (dB)" if sr else "top-1 accuracy (%)")
    ax.set_title(title or "mean over seeds, error bars: one standard deviation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig

"""Repeated seeds: a study's trials grouped by configuration, each switch's mean ± standard deviation
over seeds (and n), and the paired difference of every variant to a reference variant with its 95 %
interval (Student's t over the seeds), so that a finding can be told from noise."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestration.report.study import TrialRecord, columns, is_sr, markdown_row, new_figure, score
from orchestration.trials import configuration_name


@dataclass
class Group:
    """The trials of one configuration (its seeds)."""

    name: str
    label: str
    params: dict
    records: list[TrialRecord] = field(default_factory=list)

    def by_repeat(self, switch: str) -> SeedValues:
        """The switch's measure in each repeat (by repeat index; a US or slimmable configuration gives
        the width matched to ``switch`` in cost). A trial of several seeds (an Optuna trial with
        ``repeats``) holds them in ``scores``, by repeat index. A repeat measured twice is left out."""
        seen: dict[int, list[float]] = {}
        for r in self.records:
            row = _row_of(r, switch)
            if row is None:
                continue
            if row.get("scores"):
                for k, v in enumerate(row["scores"]):
                    seen.setdefault(k, []).append(float(v))
            elif score(row) is not None:
                seen.setdefault(int(r.params.get("repeat", 0)), []).append(float(score(row)))
        return SeedValues(
            {k: v[0] for k, v in sorted(seen.items()) if len(v) == 1},
            tuple(sorted(k for k, v in seen.items() if len(v) > 1)),
        )

    def values(self, switch: str) -> list[float]:
        """The switch's measure of every seed, in the order of the repeat index."""
        return list(self.by_repeat(switch).values.values())


@dataclass(frozen=True)
class SeedValues:
    """A configuration's measure of one switch per repeat index, and the repeats left out because
    they were measured more than once."""

    values: dict[int, float]
    duplicated: tuple[int, ...] = ()


@dataclass(frozen=True)
class Pairs:
    """Two configurations' values paired by repeat index: the repeats both have (once each), their
    differences ``a - b``, and how many repeats of either side found no partner."""

    repeats: tuple[int, ...]
    diffs: tuple[float, ...]
    unpaired: int

    @property
    def n(self) -> int:
        return len(self.diffs)


def paired(a: SeedValues | Mapping[int, float], b: SeedValues | Mapping[int, float], scale: float = 1.0) -> Pairs:
    """The one pairing of the statistics: by repeat index (hence by seed), never by position. A
    repeat that failed, is missing or was measured twice on either side drops that pair only."""
    va = a.values if isinstance(a, SeedValues) else dict(a)
    vb = b.values if isinstance(b, SeedValues) else dict(b)
    dup = {k for side in (a, b) if isinstance(side, SeedValues) for k in side.duplicated}
    keys = tuple(sorted((set(va) & set(vb)) - dup))
    unpaired = len((set(va) | set(vb) | dup) - set(keys))
    return Pairs(keys, tuple(scale * (va[k] - vb[k]) for k in keys), unpaired)


def _row_of(record: TrialRecord, switch: str) -> dict | None:
    """The row that :func:`cell` reads for ``switch`` (the switch itself, else the width matched to it)."""
    for row in record.rows:
        if row["switch"] == switch and not row.get("matches"):
            return row
    for row in record.rows:
        if row.get("matches") and switch in row["matches"].split("; "):
            return row
    return next((row for row in record.rows if row["switch"] == switch), None)


def groups(records: Sequence[TrialRecord]) -> list[Group]:
    """Finished trials grouped by their configuration (every searched value but the repeat), each
    named by its variant, else by its searched values (:func:`configuration_name`)."""
    out: dict[str, Group] = {}
    for r in records:
        if not r.complete:  # failed, or stopped before its epochs (ASHA, a time budget): no seed to average
            continue
        params = {k: v for k, v in r.params.items() if k != "repeat"}
        key = repr(sorted(params.items(), key=str))
        out.setdefault(key, Group(configuration_name(params), r.label, params)).records.append(r)
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
    lines = ([f"**{title}**", ""] if title else []) + [markdown_row(head)]
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
        lines.append(markdown_row(cells))
    unit = "PSNR (dB)" if sr else "Top-1 accuracy (%)"
    lines += ["", f"{unit}: mean ± standard deviation over seeds (number of seeds)."]
    stopped = [r for r in records if r.status in ("TERMINATED", "STOPPED") and not r.complete]
    if stopped:  # with repeats, seeds that ended at other epochs are said, never averaged
        lines.append(
            "Left out, stopped before their epochs: "
            + "; ".join(
                f"{r.name} ({r.ended}, {r.epochs}{f' of {r.planned}' if r.planned else ''} epochs)" for r in stopped
            )
            + "."
        )
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
    """Each other configuration minus ``reference``, per switch, paired by repeat index
    (:func:`paired`): the mean difference, its 95 % interval, n pairs and the repeats left unpaired."""
    gs = {g.name: g for g in groups(records)}
    if reference not in gs:
        return []
    ref, out = gs[reference], []
    for name, g in gs.items():
        if name == reference:
            continue
        for s in columns(records):
            pairs = paired(g.by_repeat(s), ref.by_repeat(s))
            if pairs.n:
                mean, lo, hi = interval95(pairs.diffs)
                out.append(
                    {
                        "configuration": name,
                        "reference": reference,
                        "switch": s,
                        "diff": mean,
                        "lo": lo,
                        "hi": hi,
                        "n": pairs.n,
                        "unpaired": pairs.unpaired,
                    }
                )
    return out


def compare_markdown(diffs: list[dict], sr: bool, title: str = "") -> str:
    unit = "dB" if sr else "points"
    lines = ([f"**{title}**", ""] if title else []) + [
        f"Paired difference to {diffs[0]['reference']!r} per switch ({unit}; 95 % interval over seeds, n pairs):",
        "",
        "| configuration | switch | difference | 95 % interval | n | unpaired |",
        "|---|---|---:|---|---:|---:|",
    ]
    k = 1 if sr else 100
    for d in diffs:
        interval = "n/a" if math.isnan(d["lo"]) else f"[{k * d['lo']:+.2f}, {k * d['hi']:+.2f}]"
        cells = [d["configuration"], d["switch"], f"{k * d['diff']:+.2f}", interval, str(d["n"]), str(d["unpaired"])]
        lines.append(markdown_row(cells))
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

"""Fronts reporter, beside the study table: the accuracy-cost fronts that trials selected (PareCO,
TwoStage, slimmable), and the non-dominated trials of any multi-objective search, each as a table, a
plot and hypervolumes against a stated reference point (:mod:`orchestration.pareto`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestration.fronts import Front
from orchestration.pareto import hypervolume_min, non_dominated_min, to_min
from orchestration.report.study import markdown_row, new_figure


# --- fronts selected inside trials --------------------------------------------------------------------
def front_markdown(fronts: Sequence[Front], reference) -> str:
    full = fronts[0].full_macs
    lines = [
        f"Hypervolume reference point: {reference.macs_fraction:g} x the [1.0] network's multiply-adds "
        f"({full / 1e6:.3f} MMACs), top-1 {100 * reference.top1:.1f} %; MACs normalized by the [1.0] network's.",
        "",
        "| method | hypervolume | front points | front s |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {f.label} | {f.hypervolume:.4f} | {len(f.points)} | {f.seconds:.0f} |" for f in fronts]
    lines += ["", "| method | switch (per-stage widths) | MMACs | MACs / [1.0] | val top-1 % | test top-1 % |"]
    lines.append("|---|---|---:|---:|---:|---:|")
    for f in fronts:
        for p in f.points:
            lines.append(
                f"| {f.label} | {p.switch} | {p.macs / 1e6:.3f} | {p.macs / f.full_macs:.3f} | "
                f"{100 * p.val_top1:.2f} | {100 * p.top1:.2f} |"
            )
    return "\n".join(lines)


def budget_markdown(fronts: Sequence[Front], fractions=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0)) -> str:
    """The best test top-1 of each front within each budget, and which method leads there."""
    head = "| MACs budget / [1.0] | " + " | ".join(f.label for f in fronts) + " | best |"
    lines = [head, "|---:|" + "---:|" * (len(fronts) + 1)]
    for frac in fractions:
        accs = []
        for f in fronts:
            within = [p.top1 for p in f.points if p.macs <= frac * f.full_macs + 0.5]
            accs.append(max(within) if within else None)
        known = [(a, f.label) for a, f in zip(accs, fronts) if a is not None]
        top = max(a for a, _ in known) if known else None
        best = ", ".join(lbl for a, lbl in known if top is not None and a >= top - 1e-12) or "-"
        cells = ["-" if a is None else f"{100 * a:.2f}" for a in accs]
        lines.append(f"| {frac:g} | " + " | ".join(cells) + f" | {best} |")
    return "\n".join(lines)


def distributable_markdown(rows: list[dict]) -> str:
    lines = ["| switch | found for budget (x [1.0] MACs per device) | test top-1 % | MMACs | max MMACs per device |"]
    lines.append("|---|---|---:|---:|---:|")
    for r in rows:
        lines.append(
            f"| {r['switch']} | {r['found_for_budget'] or 'uniform'} | {100 * r['top1']:.2f} | {r['macs'] / 1e6:.3f} | "
            f"{r['max_device_macs'] / 1e6:.3f} |"
        )
    return "\n".join(lines)


def fronts_report(fronts: Sequence[Front], reference, title: str) -> str:
    md = f"**{title}**\n\n" + front_markdown(fronts, reference)
    md += "\n\n**Best test top-1 within a budget**\n\n" + budget_markdown(fronts)
    for f in fronts:
        if f.distributable:
            md += f"\n\n**Distributable search ({f.label})**\n\n" + distributable_markdown(f.distributable)
    return md


def fronts_figure(fronts: Sequence[Front], title: str):
    fig, ax = new_figure()
    for f in fronts:
        ev = sorted(f.evaluated, key=lambda p: p.macs)
        color = ax.plot(
            [p.macs / 1e6 for p in f.points],
            [100 * p.top1 for p in f.points],
            marker="o",
            label=f"{f.label} (HV {f.hypervolume:.3f})",
        )[0].get_color()
        ax.scatter([p.macs / 1e6 for p in ev], [100 * p.val_top1 for p in ev], s=10, alpha=0.3, color=color)
    ax.set_xlabel("multiply-adds (M)")
    ax.set_ylabel("top-1 % (lines: test, of the front; dots: validation)")
    ax.set_title(title)
    ax.axvline(fronts[0].full_macs / 1e6, color="grey", lw=0.5, ls=":")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


# --- the non-dominated trials of a multi-objective search ---------------------------------------------
@dataclass
class SearchFront:
    """The non-dominated trials on the study's objectives and their hypervolume."""

    metrics: list[str]
    modes: list[str]
    reference: list[float]
    reference_stated: bool  # given in the spec (else: the worst value of each objective)
    rows: list[dict[str, Any]] = field(default_factory=list)  # every finished trial, "front" marks the front
    hypervolume: float = 0.0


def search_front(trials: Sequence[dict[str, Any]], objectives, reference: Sequence[float] | None) -> SearchFront:
    """``trials``: ``{"trial", "params", "values": {metric: value}}`` of the finished trials."""
    metrics, modes = [o.metric for o in objectives], [o.mode for o in objectives]
    done = [t for t in trials if all(t["values"].get(m) is not None for m in metrics)]
    pts = [to_min([t["values"][m] for m in metrics], modes) for t in done]
    if reference is None:  # the nadir of the finished trials: each objective's worst value
        ref_min = [max(p[k] for p in pts) for k in range(len(metrics))] if pts else [0.0] * len(metrics)
        ref = list(to_min(ref_min, modes))
    else:
        ref = list(reference)
    keep = set(non_dominated_min(pts))
    rows = [{**t, "front": i in keep} for i, t in enumerate(done)]
    hv = hypervolume_min([pts[i] for i in keep], to_min(ref, modes))
    return SearchFront(metrics, modes, ref, reference is not None, rows, hv)


def search_front_markdown(front: SearchFront, title: str) -> str:
    how = "stated in the spec" if front.reference_stated else "the worst value of each objective among the trials"
    ref = ", ".join(f"{m} {v:g}" for m, v in zip(front.metrics, front.reference))
    params = list(dict.fromkeys(k for r in front.rows for k in r["params"]))
    head = ["trial", *front.metrics, *params]
    lines = [
        f"**{title}: non-dominated trials**",
        "",
        f"Objectives: {', '.join(f'{mo} {m}' for m, mo in zip(front.metrics, front.modes))}. "
        f"Hypervolume {front.hypervolume:.6g} against the reference point ({ref}; {how}).",
        "",
        markdown_row(head),
        "|" + "---|" * len(head),
    ]
    for r in sorted((r for r in front.rows if r["front"]), key=lambda r: r["values"][front.metrics[0]]):
        cells = [r["trial"], *(f"{r['values'][m]:.6g}" for m in front.metrics)]
        cells += [str(r["params"].get(k, "")) for k in params]
        lines.append(markdown_row(cells))
    return "\n".join(lines)


def search_front_figure(front: SearchFront, title: str):
    """The first two objectives of every finished trial; the non-dominated ones joined."""
    fig, ax = new_figure()
    mx, my = front.metrics[0], front.metrics[-1]
    rest = [r for r in front.rows if not r["front"]]
    best = sorted((r for r in front.rows if r["front"]), key=lambda r: r["values"][mx])
    ax.scatter([r["values"][mx] for r in rest], [r["values"][my] for r in rest], s=18, alpha=0.5, label="dominated")
    ax.plot([r["values"][mx] for r in best], [r["values"][my] for r in best], "o-", label="non-dominated")
    ax.set_xlabel(f"{mx} ({front.modes[0]})")
    ax.set_ylabel(f"{my} ({front.modes[-1]})")
    ax.set_title(f"{title} (hypervolume {front.hypervolume:.4g})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig

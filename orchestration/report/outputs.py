"""What a finished study logs on its parent run, as entries: each report is a function of the spec, the
trial records and the title returning an :class:`Output` (tables, texts, figures, metrics, parameters
and what to print), or ``None`` where it does not apply; :func:`write_outputs` is the one writer.

A new study report is a function here and an entry of :data:`STUDY_REPORTS`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestration.report.curves import convergence, convergence_line, curves_figure, curves_table
from orchestration.report.study import TrialRecord, is_sr, study_csv, study_figure, study_markdown, study_rows
from orchestration.spec import StudySpec
from paradis.switch import parse_switch


@dataclass
class Output:
    """What one report logs, by artifact path, and the text it prints."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    printed: list[str] = field(default_factory=list)


Report = Callable[[StudySpec, list[TrialRecord], str], Output | None]


def study_table(spec: StudySpec, records: list[TrialRecord], title: str) -> Output:
    """The study table (JSON, Markdown, CSV), its plot and how many trials finished."""
    header, rows = study_rows(records)
    done = sum(r.status == "TERMINATED" for r in records)
    plot = "study/psnr_vs_macs.png" if is_sr(records) else "study/accuracy_vs_macs.png"
    return Output(
        tables={"study/table.json": [{k: r.get(k) for k in header} for r in rows]},
        texts={"study/table.md": study_markdown(records, title), "study/table.csv": study_csv(records)},
        figures={plot: study_figure(records, title)},
        metrics={"trials_finished": done, "trials_failed": len(records) - done},
    )


def learning_curves(spec: StudySpec, records: list[TrialRecord], title: str) -> Output | None:
    """Every trial's per-epoch loss and test measure, the teachers' curves, and whether they flattened."""
    if not any(r.curves for r in records):
        return None
    summary = convergence(records)
    out = Output(
        tables={"study/learning_curves.json": curves_table(records)},
        texts={"study/convergence.json": json.dumps(summary, indent=1)},
        figures={"study/learning_curves.png": curves_figure(records, f"{title}: learning curves")},
        printed=[convergence_line(summary)],
    )
    worst = summary["trials"][summary["worst"]]["gain"] if summary.get("worst") else None
    if worst is not None:
        out.metrics["teacher_late_gain"] = worst
    return out


def fronts(spec: StudySpec, records: list[TrialRecord], title: str) -> Output | None:
    """The accuracy-against-cost fronts the trials selected, with their hypervolumes."""
    from orchestration.fronts import Front
    from orchestration.report.fronts import fronts_figure, fronts_report

    found = [Front.from_dict(json.loads(r.front)) for r in records if getattr(r, "front", None)]
    if not found or spec.front is None:
        return None
    md = fronts_report(found, spec.front.reference, spec.name)
    return Output(
        tables={"study/fronts.json": [{"method": f.label, **p.as_dict()} for f in found for p in f.points]},
        texts={"study/fronts.md": md},
        figures={"study/pareto_fronts.png": fronts_figure(found, f"{title}: accuracy against multiply-adds")},
        metrics={f"hypervolume/{f.name}": f.hypervolume for f in found},
        params={"hypervolume_reference": json.dumps(spec.front.reference.model_dump())},
        printed=[md],
    )


def search_front(spec: StudySpec, records: list[TrialRecord], title: str) -> Output | None:
    """The non-dominated trials of a multi-objective search."""
    from orchestration.report.fronts import search_front as front_of
    from orchestration.report.fronts import search_front_figure, search_front_markdown

    objectives = spec.search.objectives
    if spec.search.kind != "optuna" or len(objectives) < 2:
        return None
    trials = [
        {"trial": r.name, "params": r.params, "values": {o.metric: r.metrics.get(o.metric) for o in objectives}}
        for r in records
        if r.status == "TERMINATED"
    ]
    front = front_of(trials, objectives, spec.search.reference)
    md = search_front_markdown(front, spec.name)
    return Output(
        tables={
            "study/search_front.json": [
                {"trial": r["trial"], "front": r["front"], **r["values"], **r["params"]} for r in front.rows
            ]
        },
        texts={"study/search_front.md": md},
        figures={"study/search_front.png": search_front_figure(front, spec.name)},
        metrics={"hypervolume/search": front.hypervolume},
        params={"search_hypervolume_reference": json.dumps(front.reference)},
        printed=[md],
    )


def seeds(spec: StudySpec, records: list[TrialRecord], title: str) -> Output | None:
    """Mean ± sd over seeds per configuration and switch, and the paired differences to ``compare``."""
    from orchestration.report.seeds import (
        compare_markdown,
        paired_differences,
        summary_figure,
        summary_markdown,
        summary_rows,
    )

    if spec.repeats < 2:
        return None
    md = summary_markdown(records, f"{title} ({spec.repeats} seeds)")
    out = Output(
        tables={"study/summary.json": [{**r, "values": json.dumps(r["values"])} for r in summary_rows(records)]},
        texts={"study/summary.md": md},
        figures={"study/summary.png": summary_figure(records, f"{title}: mean over {spec.repeats} seeds")},
        printed=[md],
    )
    diffs = paired_differences(records, spec.compare) if spec.compare else []
    if diffs:
        text = compare_markdown(diffs, is_sr(records), f"{title}: against {spec.compare}")
        out.texts["study/compare.md"] = text
        out.tables["study/compare.json"] = diffs
        slug = {s: parse_switch(s).slug for s in {d["switch"] for d in diffs}}
        out.metrics.update({f"diff/{d['configuration']}/{slug[d['switch']]}": d["diff"] for d in diffs})
        out.printed.append(text)
    return out


# in the order they are logged and printed
STUDY_REPORTS: tuple[Report, ...] = (study_table, learning_curves, fronts, search_front, seeds)


def write_outputs(tracker, run_id: str, outputs: list[Output]) -> None:
    """Log every output on run ``run_id`` through the tracking interface, close its figures, print it."""
    import matplotlib.pyplot as plt

    for out in outputs:
        for path, rows in out.tables.items():
            tracker.log_table(run_id, rows, path)
        for path, text in out.texts.items():
            tracker.log_text(run_id, text, path)
        for path, fig in out.figures.items():
            tracker.log_figure(run_id, fig, path)
            plt.close(fig)
        if out.metrics:
            tracker.log_metrics(run_id, out.metrics)
        if out.params:
            tracker.log_params(run_id, out.params)
        for text in out.printed:
            print("\n" + text)


def report_study(tracker, run_id: str, spec: StudySpec, records: list[TrialRecord], title: str) -> None:
    """Every study report that applies, logged on the study's parent run."""
    outputs = [out for report in STUDY_REPORTS if (out := report(spec, records, title)) is not None]
    write_outputs(tracker, run_id, outputs)

"""The terminal commands of ``paradis-study`` over a tracking store, instead of opening the MLflow UI:

- ``list``: the study runs of a store (study, experiment, start, state, trials finished/failed, wall time);
- ``status RUN``: a running or ended study, each trial's state, epoch, last metrics and failure reason;
- ``show RUN``: the study's table, summary and fronts as the study logged them;
- ``export RUN --format md|csv|json|latex``: the study table in that format;
- ``compare RUN_A RUN_B``: the configurations both runs trained, paired by seed (the one pairing of the
  statistics, :func:`orchestration.report.seeds.paired`), ``B - A`` with its 95 % interval.

``RUN`` is a study run's id or ``NAME[@latest]`` (the newest run of study NAME). Everything is read
through the :class:`~orchestration.tracking.base.Tracker` protocol, so any store the runner writes works
(an sqlite file, a tracking server); nothing is written to it."""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from typing import Any

from orchestration.report.rows import check_rows
from orchestration.report.seeds import groups, interval95, paired
from orchestration.report.studies import record_of
from orchestration.report.study import TrialRecord, columns, is_sr, markdown_row, study_csv, study_markdown, study_rows
from orchestration.tracking import tag_names
from paradis.config import ConfigError

COMMANDS = ("list", "status", "show", "export", "compare")
FORMATS = ("md", "csv", "json", "latex")
# what `show` prints, in this order, where the study logged it
SHOWN = ("study/table.md", "study/summary.md", "study/compare.md", "study/fronts.md", "study/search_front.md")
RUN_ID = re.compile(r"[0-9a-f]{32}")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (the caller prints ``run_study: error: ...``), not usage and a message."""

    def error(self, message: str):
        raise ConfigError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="run_study.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    parsers = {
        "list": sub.add_parser("list", help="the study runs of a store"),
        "status": sub.add_parser("status", help="a study run's trials: state, epoch, last metrics, failure"),
        "show": sub.add_parser("show", help="the study table, summary and fronts as the study logged them"),
        "export": sub.add_parser("export", help="the study table as Markdown, CSV, JSON or LaTeX"),
        "compare": sub.add_parser("compare", help="two study runs' common configurations, paired by seed"),
    }
    for name, q in parsers.items():
        q.add_argument(
            "--tracking-uri", help="the MLflow store (default: MLFLOW_TRACKING_URI, else ~/paradis/mlflow.db)"
        )
        if name in ("status", "show", "export"):
            q.add_argument("run", help="a study run's id, or NAME[@latest]")
    parsers["list"].add_argument("--study", help="only the runs of this study")
    parsers["export"].add_argument("--format", required=True, choices=FORMATS)
    parsers["export"].add_argument("--output", help="write here instead of standard output")
    parsers["compare"].add_argument("run_a", help="a study run's id, or NAME[@latest]")
    parsers["compare"].add_argument("run_b", help="a study run's id, or NAME[@latest]")
    return p


def main(argv: list[str]) -> int:
    """Run one command; bad input raises :class:`ConfigError` (the caller prints one line, exit 2)."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    tracker, uri = open_store(args.tracking_uri)
    text = {"list": _list, "status": _status, "show": _show, "export": _export, "compare": _compare}[args.command](
        tracker, uri, args
    )
    if getattr(args, "output", None):
        from pathlib import Path

        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


def open_store(uri: str | None):
    """The tracker of ``uri`` (resolved as the runner resolves it) and the URI; a store that does not
    exist is refused, never created."""
    from pathlib import Path

    from orchestration.tracking import check_tracking, open_tracker, resolve_tracking_uri

    resolved = resolve_tracking_uri(uri)
    if resolved.startswith("sqlite:///") and not Path(resolved[len("sqlite:///") :]).is_file():
        raise ConfigError(f"the tracking store {resolved} does not exist (no study has run there)")
    check_tracking(resolved)
    return open_tracker(resolved, "Default"), resolved


def resolve_run(tracker, uri: str, run: str) -> dict[str, Any]:
    """A study run by id or ``NAME[@latest]``."""
    if RUN_ID.fullmatch(run):
        found = tracker.study_run(run)
        if found is None:
            raise ConfigError(f"no study run {run} in {uri}")
        return found
    name, _, which = run.partition("@")
    if which not in ("", "latest"):
        raise ConfigError(f"{run!r}: a run is an id (32 hex digits) or NAME[@latest], not @{which}")
    runs = tracker.all_study_runs()
    match = [r for r in runs if r["tags"].get(tag_names.STUDY) == name]
    if not match:
        known = sorted({r["tags"].get(tag_names.STUDY, "?") for r in runs})
        raise ConfigError(f"no study {name!r} in {uri} (studies there: {', '.join(known) or 'none'})")
    return match[0]


# --- list and status -------------------------------------------------------------------------------------
def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) if ms else ""


def _wall(run: dict[str, Any]) -> str:
    if not run.get("start_ms"):
        return ""
    end = run.get("end_ms") or (time.time() * 1000 if run["status"] == "RUNNING" else None)
    return f"{(end - run['start_ms']) / 1000:.0f} s" if end else ""


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = [markdown_row(head), "|" + "|".join(["---"] * len(head)) + "|"]
    return "\n".join(lines + [markdown_row(r) for r in rows]) + "\n"


def _list(tracker, uri: str, args) -> str:
    runs = [r for r in tracker.all_study_runs() if not args.study or r["tags"].get(tag_names.STUDY) == args.study]
    rows = []
    for r in runs:
        trials = tracker.trial_details(r["run_id"])
        done = sum(t["status"] == "FINISHED" for t in trials)
        failed = sum(t["status"] in ("FAILED", "KILLED") for t in trials)
        rows.append(
            [
                r["run_id"],
                r["tags"].get(tag_names.STUDY, "?"),
                r["experiment"],
                _when(r["start_ms"]),
                r["status"],
                f"{done} / {failed} / {len(trials)}",
                _wall(r),
            ]
        )
    head = ["run", "study", "experiment", "started (UTC)", "state", "trials finished / failed / all", "wall"]
    return f"{len(rows)} study run(s) in {uri}\n\n" + _table(head, rows)


def _last_metrics(metrics: dict[str, float]) -> str:
    shown = sorted(k for k in metrics if k.startswith(("acc/", "psnr/")))[:6]
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in shown)


def _status(tracker, uri: str, args) -> str:
    run = resolve_run(tracker, uri, args.run)
    trials = sorted(tracker.trial_details(run["run_id"]), key=lambda t: t["name"] or "")
    rows = []
    for t in trials:
        tagged = t["tags"].get(tag_names.EPOCHS, "")  # an ended trial's; a running one's last loss step
        epoch = (
            int(tagged)
            if tagged.isdigit()
            else (tracker.last_step(t["run_id"], "loss") if "loss" in t["metrics"] else None)
        )
        rows.append(
            [
                t["name"],
                t["status"],
                "" if epoch is None else epoch,
                t["tags"].get(tag_names.ENDED, "running" if t["status"] == "RUNNING" else ""),
                _wall(t),
                _last_metrics(t["metrics"]),
                t["tags"].get(tag_names.ERROR, ""),
            ]
        )
    error = "; ".join(filter(None, (run["tags"].get(tag_names.ENDED), run["tags"].get(tag_names.ERROR))))
    head = (
        f"study {run['tags'].get(tag_names.STUDY, '?')} (run {run['run_id']}, experiment {run['experiment']}): "
        f"{run['status']}, started {_when(run['start_ms'])} UTC, {_wall(run) or 'no wall time'}"
        + (f"; {error}" if error else "")
    )
    table = _table(["trial", "state", "epoch", "ended by", "wall", "last metrics", "error"], rows)
    return f"{head}\n{len(trials)} trial(s)\n\n{table}"


# --- show and export --------------------------------------------------------------------------------------
def records_of(tracker, run_id: str) -> list[TrialRecord]:
    """A study run's trials as the study reporter's records, each switch row checked."""
    out = []
    for trial in tracker.trial_details(run_id):
        rows = check_rows(tracker.load_table(trial["run_id"], "table/switches.json"), f"run {trial['run_id']}")
        out.append(record_of(trial, rows))
    return sorted(out, key=lambda r: r.name)


def _show(tracker, uri: str, args) -> str:
    run = resolve_run(tracker, uri, args.run)
    texts = [t for t in (tracker.load_text(run["run_id"], path) for path in SHOWN) if t]
    if texts:
        return "\n\n".join(t.rstrip("\n") for t in texts) + "\n"
    records = records_of(tracker, run["run_id"])
    if not any(r.rows for r in records):
        return f"study run {run['run_id']} ({run['status']}) has no table yet: no trial has been evaluated\n"
    note = f"(built from its trials: study run {run['run_id']} is {run['status']} and logged no table yet)\n\n"
    return note + study_markdown(records, run["tags"].get(tag_names.STUDY, ""))


def _latex(records: list[TrialRecord]) -> str:
    header, rows = study_rows(records)

    def esc(value: Any) -> str:
        text = "" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        text = text.replace("\\", r"\textbackslash{}")
        text = re.sub(r"([&%$#_{}])", r"\\\1", text)
        return text.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}").replace("\n", " ")

    lines = [r"\begin{tabular}{" + "l" * len(header) + "}", r"\toprule", " & ".join(map(esc, header)) + r" \\"]
    lines.append(r"\midrule")
    lines += [" & ".join(esc(row.get(k)) for k in header) + r" \\" for row in rows]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"


def _export(tracker, uri: str, args) -> str:
    run = resolve_run(tracker, uri, args.run)
    records = records_of(tracker, run["run_id"])
    if not records:
        raise ConfigError(f"study run {run['run_id']} has no trials to export")
    if args.format == "md":
        return study_markdown(records, run["tags"].get(tag_names.STUDY, ""))
    if args.format == "csv":
        return study_csv(records)
    if args.format == "json":
        header, rows = study_rows(records)
        return json.dumps({"run_id": run["run_id"], "columns": header, "rows": rows}, indent=1) + "\n"
    return _latex(records)


# --- compare -----------------------------------------------------------------------------------------------
def compare_rows(a: list[TrialRecord], b: list[TrialRecord]) -> list[dict[str, Any]]:
    """Every configuration both runs finished, every switch both measured: B - A paired by seed."""
    sr = is_sr(a + b)
    scale = 1.0 if sr else 100.0
    by_b = {g.name: g for g in groups(b)}
    out = []
    for ga in groups(a):
        gb = by_b.get(ga.name)
        if gb is None:
            continue
        for switch in columns(ga.records + gb.records):
            va, vb = ga.by_repeat(switch), gb.by_repeat(switch)
            pairs = paired(vb, va, scale)
            if not pairs.n:
                continue
            mean, low, high = interval95(list(pairs.diffs))
            out.append(
                {
                    "configuration": ga.name,
                    "switch": switch,
                    "a": scale * sum(va.values.values()) / len(va.values),
                    "b": scale * sum(vb.values.values()) / len(vb.values),
                    "diff": mean,
                    "low": low,
                    "high": high,
                    "n": pairs.n,
                    "unpaired": pairs.unpaired,
                }
            )
    return out


def _compare(tracker, uri: str, args) -> str:
    runs = [resolve_run(tracker, uri, r) for r in (args.run_a, args.run_b)]
    recs = [records_of(tracker, r["run_id"]) for r in runs]
    rows = compare_rows(*recs)
    unit = "dB" if is_sr(recs[0] + recs[1]) else "points"
    title = [
        f"A: {runs[0]['tags'].get(tag_names.STUDY, '?')} run {runs[0]['run_id']} ({runs[0]['status']})",
        f"B: {runs[1]['tags'].get(tag_names.STUDY, '?')} run {runs[1]['run_id']} ({runs[1]['status']})",
        "",
    ]
    if not rows:
        return "\n".join([*title, "no configuration was finished in both runs with a seed in common"]) + "\n"

    def num(v: float) -> str:
        return "" if math.isnan(v) else f"{v:+.2f}"

    head = ["configuration", "switch", "A", "B", f"B - A ({unit})", "95 % interval", "n", "unpaired"]
    body = [
        [
            r["configuration"],
            r["switch"],
            f"{r['a']:.2f}",
            f"{r['b']:.2f}",
            num(r["diff"]),
            "" if math.isnan(r["low"]) else f"[{num(r['low'])}, {num(r['high'])}]",
            r["n"],
            r["unpaired"],
        ]
        for r in rows
    ]
    note = "\nPaired by seed (repeat index); n < 2 gives no interval; 'unpaired': seeds of one run only.\n"
    return "\n".join(title) + "\n" + _table(head, body) + note

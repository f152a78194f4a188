"""What ended each trial of a study (finished, ASHA, the time budget, a failure, or the study's interruption)
and its record, from Ray Tune's results."""

from __future__ import annotations

import json
from pathlib import Path

from orchestration.report import TrialRecord
from orchestration.report.curves import curve_rows
from orchestration.spec import StudySpec
from orchestration.tracking.callback import FAILED_KEY
from orchestration.trials import run_config_for, trial_count, trial_name
from paradis.methods import describe_method


def _last_table(result) -> str | None:
    table = (result.metrics or {}).get("table")
    frame = result.metrics_dataframe
    if table is None and frame is not None and "table" in frame:
        tables = frame["table"].dropna()
        table = tables.iloc[-1] if len(tables) else None
    return table


INTERRUPTED = "INTERRUPTED"  # a trial stopped short, or never started, when the driver was stopped


def _planned(spec: StudySpec, config: dict) -> int | None:
    """The epochs a trial's configuration asks for (``None`` for a configuration that does not validate:
    an errored trial's table must still be written)."""
    try:
        return run_config_for(spec, config).training.epochs
    except Exception:
        return None


def _short(spec: StudySpec, config: dict, metrics: dict) -> bool:
    """Whether a trial ended before its last epoch."""
    planned = _planned(spec, config)
    return planned is not None and int(metrics.get("epoch", 0) or 0) < planned


def interrupted(results, spec: StudySpec, budget_hit: bool = False, completed: set[str] | None = None) -> bool:
    """Whether Tune was stopped (SIGINT, SIGTERM) before the study ended: trials it never created, or a
    trial that ended short of its epochs that no scheduler stopped. Tune marks the trials it stops on
    SIGINT terminated, as it marks those ASHA stops, but completes (``on_trial_complete``) only the latter:
    ``completed`` holds those trials' ids (None: not known, every short trial under ASHA is ASHA's). A
    study whose time budget ran out was stopped by the budget, not interrupted."""
    if budget_hit:
        return False
    if len(results) < trial_count(spec):
        return True
    return any(_cut_short(r, spec, completed) for r in results)


def _cut_short(result, spec: StudySpec, completed: set[str] | None) -> bool:
    """A trial that ended short of its epochs with no scheduler's decision: stopped with the study."""
    metrics = result.metrics or {}
    if result.error or metrics.get(FAILED_KEY) or not _short(spec, result.config or {}, metrics):
        return False
    if spec.scheduler.kind == "none":
        return True
    return completed is not None and metrics.get("trial_id") not in completed


def _ending(result, metrics: dict, spec: StudySpec, stopped: bool, budget_hit: bool, completed=None) -> tuple[str, str]:
    """A trial's status and what ended it: finished, ASHA, budget, failure or interrupted."""
    if result.error:
        return "ERROR", "failure"
    if metrics.get(FAILED_KEY):
        return "FAILED", "failure"
    if not _short(spec, result.config or {}, metrics):
        return "TERMINATED", "finished"
    if budget_hit:
        return ("STOPPED", "budget") if metrics.get("epoch") else ("STOPPED", "not started")
    if stopped and (completed is None or _cut_short(result, spec, completed)):
        return INTERRUPTED, "interrupted"
    return "TERMINATED", "ASHA" if spec.scheduler.kind == "asha" else "stopped"


def records_from(
    results, spec: StudySpec, budget_hit: bool = False, completed: set[str] | None = None
) -> list[TrialRecord]:
    """Each trial's record; ``completed``: the ids of the trials Tune completed (see :func:`interrupted`)."""
    records = []
    stopped = interrupted(results, spec, budget_hit, completed)
    for result in results:
        metrics, config = result.metrics or {}, result.config or {}
        try:
            label = describe_method(run_config_for(spec, config).training)
        except Exception:
            label = "?"
        table = _last_table(result)
        status, ended = _ending(result, metrics, spec, stopped, budget_hit, completed)
        name = trial_name(config, str(metrics.get("trial_id", Path(result.path or "?").name)))
        error = str(result.error)[:500] if result.error else metrics.get(FAILED_KEY)
        record = TrialRecord(
            metrics.get("trial_id", name), name, label, dict(config), json.loads(table) if table else []
        )
        record.status, record.error, record.ended = status, error, ended
        record.epochs, record.planned = int(metrics.get("epoch", 0) or 0), _planned(spec, config)
        record.wall_s = metrics.get("time_total_s")
        record.front = metrics.get("front")
        record.metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        frame = result.metrics_dataframe
        record.curves = curve_rows(frame.to_dict("records")) if frame is not None else []
        records.append(record)
    records.sort(key=lambda r: r.name)
    return records

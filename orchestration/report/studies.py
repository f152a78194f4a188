"""The studies' runs as the reproduction report reads them: which study files play which role at
each scale, and each study's newest finished run (pooled with its ``repeat_from`` runs) as records
paired by repeat index; the paper's own Tables 1-5 as the same kind of result."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orchestration.tracking.tag_names as tag_names
from orchestration.report.curves import parse_convergence
from orchestration.report.paper import load_paper, paper_records
from orchestration.report.rows import check_rows
from orchestration.report.seeds import (
    Group,
    SeedValues,
    groups,
)
from orchestration.report.study import TrialRecord
from orchestration.spec import StudySpec

# The reduced studies of studies/, in the order the report lists them.
REDUCED_STUDIES = (
    "quickstart",
    "ablation",
    "baselines",
    "for_free",
    "scaling_8_switches",
    "sr_paradis",
    "pareco",
    "search",
    "search_multiobjective",
)
# The same roles at the paper's scale (studies/paper/): ``--scale paper`` reads these runs instead.
PAPER_STUDIES = {
    "ablation": "paper/ablation_mobilenet_imagenet",
    "baselines": "paper/baselines_mobilenet_imagenet",
    "for_free": "paper/for_free_resnet50_imagenet",
    "scaling_8_switches": "paper/scaling_8_switches_mobilenet_imagenet",
    "sr_paradis": "paper/sr_paradis_div2k",
    "pareco": "paper/pareco_imagenet",
    "search": "paper/search_imagenet",
}
SCALES = {"reduced": {k: k for k in REDUCED_STUDIES}, "paper": PAPER_STUDIES}


# --- the studies' runs -----------------------------------------------------------------------------
@dataclass
class StudyResult:
    """A study's newest finished run in the tracking store (``run_id`` ``None``: never finished)."""

    key: str  # the study's role (a reduced study's file stem)
    spec: StudySpec | None  # None: the paper's own tables
    path: str = ""  # the spec file, under studies/
    run_id: str | None = None  # the newest
    wall_s: float | None = None  # of every run pooled
    records: list[TrialRecord] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)  # the runs whose seeds are pooled, newest first
    convergence: list[dict[str, Any]] = field(default_factory=list)  # each run's study/convergence.json
    configuration: dict[str, Any] | None = None  # the resolved spec, less the seeds (POOLED_KEYS)
    experiment_name: str = ""  # without a spec (results read from exported files)

    @property
    def experiment(self) -> str:
        return self.spec.tracking.experiment if self.spec is not None else self.experiment_name

    def group(self, variant: str) -> Group | None:
        return next((g for g in groups(self.records) if g.name == variant), None)

    def groups_where(self, key: str, value: Any) -> list[Group]:
        return [g for g in groups(self.records) if g.params.get(key) == value]


def search_values(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial's searched values: the ``{tag_names.SEARCH}`` tag, else (runs of older versions) its
    ``search.*`` params, which MLflow keeps as strings."""
    try:
        params = json.loads(trial["tags"].get(tag_names.SEARCH) or "null")
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(f"run {trial.get('run_id')}: its {tag_names.SEARCH} tag is not JSON of a few levels") from None
    if not isinstance(params, dict):
        params = {}
        for key, value in (trial.get("params") or {}).items():
            if key.startswith("search."):
                params[key[len("search.") :]] = int(value) if key == "search.repeat" and value.isdigit() else value
    if "repeat" in params:
        params["repeat"] = _repeat_index(params["repeat"], trial.get("run_id"))
    return params


def _repeat_index(value: Any, run_id: str) -> int:
    """A trial's repeat index: a whole number from 0 (the seed's position, by which seeds pair)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1_000_000:
        raise ValueError(f"run {run_id}: repeat {str(value)[:40]!r} is not a repeat index (a whole number from 0)")
    return value


def record_of(trial: dict[str, Any], rows: list[dict[str, Any]]) -> TrialRecord:
    """A child run as the study reporter's :class:`TrialRecord` (its search values from the
    ``{tag_names.SEARCH}`` tag, the method's label from ``{tag_names.METHOD}``)."""
    tags = trial["tags"]
    params = search_values(trial)
    status = "TERMINATED" if trial["status"] == "FINISHED" else trial["status"]
    ended = tags.get(tag_names.ENDED, "finished" if status == "TERMINATED" else "failure")
    if status == "TERMINATED" and ended == "budget":
        status = "STOPPED"
    record = TrialRecord(
        tags.get(tag_names.TRIAL_ID, trial["run_id"]),
        trial["name"] or trial["run_id"],
        tags.get(tag_names.METHOD, "?"),
        params,
        rows,
        status,
    )
    record.ended = ended if ended in ENDINGS else "?"
    epochs = tags.get(tag_names.EPOCHS, "")
    record.epochs = int(epochs) if epochs.isdigit() and len(epochs) < 8 else None
    planned = str((trial.get("params") or {}).get("training.epochs", ""))
    record.planned = int(planned) if planned.isdigit() and len(planned) < 8 else None
    start, end = trial.get("start_ms"), trial.get("end_ms")
    record.wall_s = (end - start) / 1000 if isinstance(start, int) and isinstance(end, int) else None
    return record


ENDINGS = ("finished", "ASHA", "budget", "not started", "failure", "interrupted", "stopped")


# What may differ between two runs of one study whose seeds the report pools: how many seeds each ran.
POOLED_KEYS = ("repeats", "repeat_from")


def _configuration(tracker, run_id: str) -> dict[str, Any] | None:
    """The study's resolved spec as the run logged it, less what :data:`POOLED_KEYS` may change."""
    text = tracker.load_text(run_id, "spec/resolved.json")
    try:
        data = json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None
    return {k: v for k, v in data.items() if k not in POOLED_KEYS} if isinstance(data, dict) else None


def _curves_by_trial(table: list[dict[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """``study/learning_curves.json`` rows (trial, epoch, metric, value) as each trial's curve."""
    by: dict[str, dict[int, dict[str, float]]] = {}
    for row in table:
        trial, epoch, metric, value = (row.get(k) for k in ("trial", "epoch", "metric", "value"))
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if isinstance(trial, str) and isinstance(epoch, int) and isinstance(metric, str) and numeric:
            by.setdefault(trial, {}).setdefault(epoch, {"epoch": epoch})[metric] = float(value)
    return {t: [epochs[e] for e in sorted(epochs)] for t, epochs in by.items()}


def load_study_run(tracker, key: str, spec: StudySpec) -> StudyResult:
    """The newest FINISHED parent run of ``spec`` in ``tracker`` with its trials' switch tables, pooled
    with every other FINISHED run of the same configuration (extra seeds, ``repeat_from``): a run that
    differs in anything but its seeds is left out, and a repeat measured twice drops out of the pairs."""
    result = StudyResult(key, spec)
    finished = [r for r in tracker.study_runs(spec.name) if r["status"] == "FINISHED"]
    if not finished:
        return result
    newest = finished[0]
    config = _configuration(tracker, newest["run_id"])
    runs = [newest] + [r for r in finished[1:] if config is not None and _configuration(tracker, r["run_id"]) == config]
    result.run_id, result.configuration = newest["run_id"], config
    result.run_ids = [r["run_id"] for r in runs]
    result.wall_s = sum((r["end_ms"] - r["start_ms"]) / 1000 for r in runs if r["end_ms"] and r["start_ms"]) or None
    for run in runs:
        curves = _curves_by_trial(tracker.load_table(run["run_id"], "study/learning_curves.json"))
        for trial in tracker.trial_details(run["run_id"]):
            where = f"table/switches.json of run {trial['run_id']}"
            rows = check_rows(tracker.load_table(trial["run_id"], "table/switches.json"), where)
            record = record_of(trial, rows)
            record.curves = curves.get(record.name, [])
            result.records.append(record)
        text = tracker.load_text(run["run_id"], "study/convergence.json")
        try:
            summary = parse_convergence(json.loads(text)) if text else None
        except (ValueError, RecursionError):
            summary = None
        if summary is not None:
            result.convergence.append(summary)
    result.records.sort(key=lambda r: r.name)
    return result


# --- checks and claims -----------------------------------------------------------------------------
def finished(results: dict[str, StudyResult], key: str) -> StudyResult | None:
    """Study ``key`` of ``results`` if a run of it was found (the paper's tables count as one)."""
    r = results.get(key)
    return r if r is not None and r.run_id else None


def by_seed(group: Group | None, switch: str) -> SeedValues:
    """The switch's accuracy in each repeat of a configuration (a US or slimmable configuration gives
    the width matched to ``switch`` in cost); none for a configuration the study lacks."""
    return group.by_repeat(switch) if group else SeedValues({})


def paper_results() -> dict[str, StudyResult]:
    """The paper's Tables 1-5 as study results (one value per configuration and switch)."""
    paper = load_paper()
    out = {}
    for key, study in paper.studies.items():
        records = paper_records(study, paper.models[study.model].macs)
        out[key] = StudyResult(key, None, path=study.source, run_id="paper", records=records)
    return out


def load_results(
    uri: str, studies_dir: Path, keys: Sequence[str] = REDUCED_STUDIES, scale: str = "reduced", tracker_of=None
) -> dict[str, StudyResult]:
    """The studies ``keys`` (roles; those with a file at ``scale``) of ``studies_dir``, each with its
    newest finished run in store ``uri``."""
    from orchestration.preflight import load_study
    from orchestration.tracking import open_tracker

    open_ = tracker_of or open_tracker
    out = {}
    for key in keys:
        path = SCALES[scale].get(key)
        if path is None:
            continue
        spec = load_study(studies_dir / f"{path}.yaml")
        result = load_study_run(open_(uri, spec.tracking.experiment), key, spec)
        result.path = path
        out[key] = result
    return out

"""The one study runner: every study kind runs its trials as Ray Tune trials, tracked as one parent
run with a child run per trial, and ends with the reports (the study table and plot; the fronts, for
trials that selected one; the non-dominated trials, for a multi-objective search)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from orchestration.report import TrialRecord, is_sr, study_csv, study_figure, study_markdown, study_rows
from orchestration.search import SEARCHES, tune_setup
from orchestration.spec import StudySpec, check_resources, grid_points, run_config_for
from orchestration.tracking import Tracker, git_commit, open_tracker
from orchestration.tracking.callback import FAILED_KEY, tracking_callback
from paradis.engine.metrics import measure_key
from paradis.methods import describe_method, make_planner
from paradis.switch import parse_switch
from paradis.tasks import get_task

STATE_FILE = "paradis_study.json"


class NothingToResume(LookupError):
    """``--resume`` found no interrupted run of the study."""


def trial_resources(spec: StudySpec) -> dict[str, float]:
    res = spec.resources
    if res.workers_per_trial > 1:
        return {"cpu": 0.1}  # the trial only drives a TorchTrainer, whose workers get their own resources
    out = {"cpu": res.cpus_per_worker}
    if res.gpus_per_worker:
        out["gpu"] = res.gpus_per_worker
    return out


def experiment_dirs(spec: StudySpec) -> list[Path]:
    root = spec.resolved_storage_path()
    if not root.is_dir():
        return []
    pattern = re.compile(re.escape(spec.name) + r"-\d{8}-\d{6}$")
    return sorted((p for p in root.iterdir() if p.is_dir() and pattern.match(p.name)), key=lambda p: p.name)


def progress_reporter(spec: StudySpec):
    from ray import tune

    base = run_config_for(spec, {})
    switches = base.evaluation.switches or [str(s) for s in make_planner(base.training).trained_switches]
    measure = get_task(base.task).measure
    metrics = {"epoch": "epoch", "loss": "loss"}
    metrics.update({measure_key(measure, parse_switch(s)): f"{measure} {s}" for s in switches})
    params = list(spec.search.space) + (["variant"] if spec.search.variants else [])
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=params, max_report_frequency=30)


def _last_table(result) -> str | None:
    table = (result.metrics or {}).get("table")
    frame = result.metrics_dataframe
    if table is None and frame is not None and "table" in frame:
        tables = frame["table"].dropna()
        table = tables.iloc[-1] if len(tables) else None
    return table


def records_from(results, spec: StudySpec) -> list[TrialRecord]:
    records = []
    for result in results:
        metrics, config = result.metrics or {}, result.config or {}
        try:
            label = describe_method(run_config_for(spec, config).training)
        except Exception:
            label = "?"
        table = _last_table(result)
        status = "ERROR" if result.error else ("FAILED" if metrics.get(FAILED_KEY) else "TERMINATED")
        name = Path(result.path).name if result.path else metrics.get("trial_id", "?")
        error = str(result.error)[:500] if result.error else metrics.get(FAILED_KEY)
        record = TrialRecord(
            metrics.get("trial_id", name), name, label, dict(config), json.loads(table) if table else []
        )
        record.status, record.error = status, error
        record.front = metrics.get("front")
        record.metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        records.append(record)
    records.sort(key=lambda r: r.name)
    return records


def _start_tracking(spec: StudySpec, spec_text: str, source: str, uri: str, resume_run_id: str | None) -> Tracker:
    tracker = open_tracker(uri, spec.experiment_name())
    if resume_run_id:
        tracker.resume_study(resume_run_id)
        return tracker
    tags = {
        "paradis.study": spec.name,
        "paradis.git_commit": git_commit(Path(source).parent),
        "paradis.search": spec.search.kind,
        "mlflow.note.content": spec.description,
    }
    resolved = json.dumps(spec.model_dump(mode="json"), indent=1)
    tracker.start_study(spec.name, tags, {"spec/study.yaml": spec_text, "spec/resolved.json": resolved})
    return tracker


def _tuner(spec: StudySpec, tracker: Tracker, trainable, exp_name: str):
    from ray import tune

    space, tune_config = tune_setup(spec)

    def params_of(config: dict) -> dict:
        return run_config_for(spec, config).model_dump(mode="json")

    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=exp_name,
            storage_path=str(spec.resolved_storage_path()),
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[tracking_callback(tracker, params_of, {"paradis.study": spec.name})],
            progress_reporter=progress_reporter(spec),
            verbose=1,
        ),
    )


def run_study(
    spec: StudySpec, spec_text: str, source: str, *, uri: str, resume: bool = False, address: str | None = None
) -> int:
    """Run (or resume) the study; returns 0 when every trial finished."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table shows per-switch accuracy
    # a failed trial's last report carries its reason, not the objective: the searcher records a failure
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    import ray
    from ray import tune

    from orchestration.trainable import study_trial

    storage = spec.resolved_storage_path()
    storage.mkdir(parents=True, exist_ok=True)
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address) if address else ray.init()
    if address:
        check_resources(spec, source, ray.cluster_resources().get("GPU", 0.0))
    spec_data = json.dumps(spec.data_dict)
    trainable = tune.with_resources(tune.with_parameters(study_trial, spec_data=spec_data), trial_resources(spec))
    if resume:
        candidates = [p for p in experiment_dirs(spec) if tune.Tuner.can_restore(str(p))]
        if not candidates:
            raise NothingToResume(f"no interrupted study {spec.name!r} under {storage} to resume")
        exp_dir = candidates[-1]
        state = json.loads((exp_dir / STATE_FILE).read_text())
        tracker = _start_tracking(spec, spec_text, source, uri, state["parent_run_id"])
        print(f"[paradis] resuming {exp_dir}")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
    else:
        exp_name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        exp_dir = storage / exp_name
        tracker = _start_tracking(spec, spec_text, source, uri, None)
        tuner = _tuner(spec, tracker, trainable, exp_name)
        exp_dir.mkdir(parents=True, exist_ok=True)
        (exp_dir / STATE_FILE).write_text(json.dumps({"parent_run_id": tracker.parent_run_id, "uri": uri}))
    parent = tracker.parent_run_id
    print(f"[paradis] study {spec.name}: tracking run {parent} in {uri}; Ray results in {exp_dir}")
    status, failed, records = "FAILED", 0, []
    try:
        records = records_from(tuner.fit(), spec)
        title = f"{spec.name}: {spec.description}".strip().rstrip(":")
        report_study(tracker, parent, spec, records, title)
        failed = sum(r.status != "TERMINATED" for r in records)
        status = "FINISHED" if not failed else "FAILED"
        print("\n" + study_markdown(records, title))
    except BaseException as err:
        tracker.set_tags(parent, {"paradis.error": f"{type(err).__name__}: {err}"[:5000]})
        raise
    finally:
        tracker.finish(parent, status)
    print(
        f"\n[paradis] {len(records) - failed} of {len(records)} trials finished; "
        f"open the MLflow UI with: mlflow ui --backend-store-uri {uri}"
    )
    return 0 if not failed else 1


def report_study(tracker: Tracker, run_id: str, spec: StudySpec, records: list[TrialRecord], title: str) -> None:
    """The study's reports on its parent run: the study table and plot, the fronts, the search front."""
    import matplotlib.pyplot as plt

    header, rows = study_rows(records)
    tracker.log_table(run_id, [{k: r.get(k) for k in header} for r in rows], "study/table.json")
    tracker.log_text(run_id, study_markdown(records, title), "study/table.md")
    tracker.log_text(run_id, study_csv(records), "study/table.csv")
    fig = study_figure(records, title)
    tracker.log_figure(run_id, fig, "study/psnr_vs_macs.png" if is_sr(records) else "study/accuracy_vs_macs.png")
    plt.close(fig)
    done = sum(r.status == "TERMINATED" for r in records)
    tracker.log_metrics(run_id, {"trials_finished": done, "trials_failed": len(records) - done})
    report_fronts(tracker, run_id, spec, records, title)
    if spec.search.kind == "optuna" and len(spec.search.objectives) > 1:
        report_search_front(tracker, run_id, spec, records, title)


def report_fronts(tracker: Tracker, run_id: str, spec: StudySpec, records: list[TrialRecord], title: str) -> None:
    import matplotlib.pyplot as plt

    from orchestration.fronts import Front
    from orchestration.report.fronts import fronts_figure, fronts_report

    fronts = [Front.from_dict(json.loads(r.front)) for r in records if getattr(r, "front", None)]
    if not fronts or spec.front is None:
        return
    md = fronts_report(fronts, spec.front.reference, spec.name)
    tracker.log_text(run_id, md, "study/fronts.md")
    tracker.log_table(
        run_id, [{"method": f.label, **p.as_dict()} for f in fronts for p in f.points], "study/fronts.json"
    )
    tracker.log_metrics(run_id, {f"hypervolume/{f.name}": f.hypervolume for f in fronts})
    tracker.log_params(run_id, {"hypervolume_reference": json.dumps(spec.front.reference.model_dump())})
    fig = fronts_figure(fronts, f"{title}: accuracy against multiply-adds")
    tracker.log_figure(run_id, fig, "study/pareto_fronts.png")
    plt.close(fig)
    print("\n" + md)


def report_search_front(tracker: Tracker, run_id: str, spec: StudySpec, records: list[TrialRecord], title: str):
    import matplotlib.pyplot as plt

    from orchestration.report.fronts import search_front, search_front_figure, search_front_markdown

    objectives = spec.search.objectives
    trials = [
        {"trial": r.name, "params": r.params, "values": {o.metric: r.metrics.get(o.metric) for o in objectives}}
        for r in records
        if r.status == "TERMINATED"
    ]
    front = search_front(trials, objectives, spec.search.reference)
    md = search_front_markdown(front, spec.name)
    tracker.log_text(run_id, md, "study/search_front.md")
    rows = [{"trial": r["trial"], "front": r["front"], **r["values"], **r["params"]} for r in front.rows]
    tracker.log_table(run_id, rows, "study/search_front.json")
    tracker.log_metrics(run_id, {"hypervolume/search": front.hypervolume})
    tracker.log_params(run_id, {"search_hypervolume_reference": json.dumps(front.reference)})
    fig = search_front_figure(front, spec.name)
    tracker.log_figure(run_id, fig, "study/search_front.png")
    plt.close(fig)
    print("\n" + md)


def dry_run_text(spec: StudySpec) -> str:
    """The resolved trials, without starting Ray."""
    lines = [f"study {spec.name}: {spec.search.kind} search, {spec.search.samples} sample(s)"]
    base = run_config_for(spec, {})
    t = base.training
    lines.append(
        f"base: {base.model.name} on {base.data.name}, method {t.method}, distillation {t.distillation}, "
        f"switches {', '.join(t.switches)}, wide factor {t.wide_factor:g}, beta {t.beta:g}, {t.epochs} epoch(s), "
        f"batch {t.batch_size}, lr {t.optimizer.lr:g} ({t.schedule.kind}), {base.precision}"
        + (", channels last" if base.channels_last else "")
    )
    res, sched = spec.resources, spec.scheduler
    lines.append(
        f"resources: {res.workers_per_trial} worker(s) per trial x {res.cpus_per_worker:g} CPU"
        f" + {res.gpus_per_worker:g} GPU; scheduler {sched.kind}"
        + (f" on {sched.metric} (grace {sched.grace_period})" if sched.kind == "asha" else "")
    )
    if spec.search.kind == "grid":
        points = grid_points(spec)
        lines.append(f"{len(points) * spec.search.samples} trial(s):")
        for i, p in enumerate(points):
            cfg = run_config_for(spec, p)
            shown = {**spec.search.variants.get(p.get("variant"), {}), **p}
            desc = ", ".join(f"{k}={v}" for k, v in shown.items() if k != "variant")
            front = " (front)" if spec.front is not None and cfg.data.holdout else ""
            lines.append(
                f"  {p.get('variant', f'trial {i}')}: {describe_method(cfg.training)}{front}; "
                f"switches {', '.join(cfg.training.switches)}" + (f"; {desc}" if desc else "")
            )
    lines += SEARCHES[spec.search.kind].describe(spec, 5)
    return "\n".join(lines)

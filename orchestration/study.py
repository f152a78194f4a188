"""The one study runner: every study kind runs its trials as Ray Tune trials, tracked as one parent
run with a child run per trial, and ends with the reports (the study table and plot; the fronts, for
trials that selected one; the non-dominated trials, for a multi-objective search)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from orchestration.cores import core_use, cores_callback, start_broker, utilisation_line
from orchestration.endings import INTERRUPTED, records_from
from orchestration.preflight import check_resources
from orchestration.progress import progress_callback
from orchestration.report import TrialRecord, study_markdown
from orchestration.report.outputs import report_study
from orchestration.resume import STATE_FILE, record_tuning_seconds, resumable_experiment, tuning_seconds
from orchestration.search import SEARCHES, optuna_recorder, optuna_storage, tune_setup
from orchestration.spec import StudySpec
from orchestration.tracking import Tracker, git_commit, open_tracker, tag_names
from orchestration.tracking.callback import tracking_callback
from orchestration.trials import run_config_for, trial_count, trials
from paradis.methods import describe_method


def private_token(path: Path | None = None) -> None:
    """The Ray token the local Ray created (or that the user gave) readable by this user only."""
    token = path or Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        if token.is_file() and token.stat().st_uid == os.getuid() and token.stat().st_mode & 0o077:
            token.chmod(0o600)
    except OSError:  # a read-only mount: the deployment's entrypoint handles it
        pass


def trial_resources(spec: StudySpec) -> dict[str, float]:
    res = spec.resources
    if res.workers_per_trial > 1:
        return {"cpu": 0.1}  # the trial only drives a TorchTrainer, whose workers get their own resources
    out = {"cpu": res.cpus_per_worker}
    if res.gpus_per_worker:
        out["gpu"] = res.gpus_per_worker
    return out


@contextlib.contextmanager
def sigterm_as_sigint():
    """SIGTERM (``kill``, a scheduler's stop) handled as Ctrl+C: Tune saves its state and stops the
    trials, instead of the driver dying with a native stack dump."""
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def trial_tags(spec: StudySpec, source: str) -> dict[str, str]:
    """Tags of every run of the study: the study, and the source the runs table shows."""
    return {tag_names.STUDY: spec.name, "mlflow.source.name": f"run_study.py {source}", "mlflow.source.type": "JOB"}


def _start_tracking(spec: StudySpec, spec_text: str, source: str, tracker: Tracker, exp_dir: Path) -> str:
    tags = {
        **trial_tags(spec, source),
        tag_names.EXPERIMENT_DIR: str(exp_dir),
        tag_names.STUDY: spec.name,
        tag_names.GIT_COMMIT: git_commit(Path(source).parent),
        "mlflow.source.git.commit": git_commit(Path(source).parent),
        tag_names.SEARCH: spec.search.kind,
        "mlflow.note.content": spec.description,
    }
    resolved = json.dumps(spec.model_dump(mode="json"), indent=1)
    return tracker.start_study(spec.name, tags, {"spec/study.yaml": spec_text, "spec/resolved.json": resolved})


def _tuner(spec: StudySpec, tracker: Tracker, trainable, exp_name: str, storage: str | None, source: str):
    from ray import tune

    space, tune_config = tune_setup(spec)

    def config_of(config: dict):
        return run_config_for(spec, config)

    callbacks = [
        tracking_callback(tracker, config_of, trial_tags(spec, source), spec.tracking.checkpoints),
        progress_callback(spec),  # the per-switch table, on Ray's default output
    ]
    if shares_cores(spec):
        callbacks.append(cores_callback(broker_name(exp_name)))
    if storage:  # the search's Optuna study, for optuna-dashboard and optuna.load_study
        callbacks.append(optuna_recorder(spec, storage, exp_name))

    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=exp_name,
            storage_path=str(spec.resolved_storage_path()),
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            verbose=1,
        ),
    )


class Trainables:
    """The study's Tune trainable for an experiment folder's name. With shared cores it starts the
    study's core broker first, and keeps its handle: a named actor lives while a handle does."""

    def __init__(self, spec: StudySpec):
        self.spec, self.brokers = spec, []

    def __call__(self, exp_name: str):
        from ray import tune

        from orchestration.trainable import study_trial

        cores = None
        if shares_cores(self.spec):
            cores = broker_name(exp_name)
            self.brokers.append(start_broker(cores, self.spec.resources.max_threads_per_trial))
        trainable = tune.with_parameters(study_trial, spec_data=json.dumps(self.spec.data_dict), cores=cores)
        return tune.with_resources(trainable, trial_resources(self.spec))


def run_study(
    spec: StudySpec, spec_text: str, source: str, *, uri: str, resume: bool = False, address: str | None = None
) -> int:
    """Run (or resume) the study; returns 0 when every trial finished."""
    # a failed trial's last report carries its reason, not the objective: the searcher records a failure
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    import ray
    from ray import tune

    tracker = open_tracker(uri, spec.experiment_name())
    if resume:  # decided before Ray starts
        exp_dir, parent = resumable_experiment(spec, tracker)
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address) if address else ray.init()
    private_token()
    if address:
        resources = ray.cluster_resources()
        check_resources(spec, source, resources.get("GPU", 0.0), resources.get("CPU", 0.0))
    trainable_for = Trainables(spec)
    if resume:
        tracker.resume_study(parent)
        print(f"[paradis] resuming {exp_dir}")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable_for(exp_dir.name), resume_errored=True)
    else:
        tuner, exp_dir, parent = _new_tuner(spec, spec_text, source, tracker, trainable_for, uri)
    print(f"[paradis] study {spec.name}: tracking run {parent} in {uri}; Ray results in {exp_dir}")
    status, failed, records = "FAILED", 0, []
    try:
        used = tuning_seconds(exp_dir)
        records, budget_hit, cores = _fit(tuner, spec, used, tracker, parent)
        record_tuning_seconds(exp_dir, used + cores["loop_seconds"])
        close_lost_trials(tracker, parent, {r.trial_id for r in records})
        tag_endings(tracker, parent, records)
        title = f"{spec.name}: {spec.description}".strip().rstrip(":")
        report_study(tracker, parent, spec, records, title)
        failed = sum(r.status not in ("TERMINATED", "STOPPED") for r in records)
        status = "FINISHED" if not failed else "FAILED"
        print("\n" + study_markdown(records, title))
        report_cores(tracker, parent, cores)
        if budget_hit:
            say_budget(tracker, parent, spec, records)
        stopped = [r for r in records if r.status == INTERRUPTED]
        if stopped or (not budget_hit and len(records) < trial_count(spec)):
            status = "KILLED"
            return _interrupted(tracker, parent, spec, records, stopped, source)
    except BaseException as err:
        tracker.set_tags(parent, {tag_names.ERROR: f"{type(err).__name__}: {err}"[:5000]})
        raise
    finally:
        tracker.finish(parent, status)
    print(
        f"\n[paradis] {sum(r.complete for r in records)} of {len(records)} trials finished; "
        f"open the MLflow UI with: mlflow ui --backend-store-uri {uri}"
    )
    return 0 if not failed else 1


def _fit(tuner, spec: StudySpec, used: float, tracker: Tracker, parent: str) -> tuple[list[TrialRecord], bool, dict]:
    """Run the trials (SIGTERM as Ctrl+C); their records, whether the time budget ended the study (``used``:
    the seconds earlier loops of a resumed study took, which Tune's budget counts), and how busy the cores
    were over the tuning loop. A trial Tune completed has its tracking run closed (the callback's
    ``on_trial_complete``); one stopped with the study has it still open."""
    import ray

    start, since = time.monotonic(), time.time()
    with sigterm_as_sigint():
        results = tuner.fit()
    wall = time.monotonic() - start
    budget = spec.search.time_budget_s
    budget_hit = budget_reached(budget, used, wall)
    cores = core_use(results, since, ray.cluster_resources().get("CPU", 0.0), wall)
    return records_from(results, spec, budget_hit, _completed(tracker, parent)), budget_hit, cores


def _completed(tracker: Tracker, parent: str) -> set[str] | None:
    """The trials whose tracking runs Tune's completion closed; None when the store cannot say."""
    try:
        return {trial_id for _, trial_id, status in tracker.trial_runs(parent) if status != "RUNNING"}
    except Exception as err:  # tracking never stops a study
        print(f"[paradis] tracking: could not read the trials' runs: {type(err).__name__}: {err}", file=sys.stderr)
        return None


def budget_reached(budget: float | None, used: float, wall: float) -> bool:
    """Whether a tuning loop of ``wall`` seconds, after ``used`` seconds of earlier ones, spent the budget."""
    return budget is not None and used + wall >= budget


def report_cores(tracker: Tracker, parent: str, cores: dict[str, float]) -> None:
    """The line and the study run's metrics of core utilisation."""
    tracker.log_metrics(parent, {k: v for k, v in cores.items() if k != "cpus"})
    print("\n[paradis] " + utilisation_line(cores["core_seconds_busy"], cores["cpus"], cores["loop_seconds"]))


def shares_cores(spec: StudySpec) -> bool:
    return spec.resources.share_free_cores and spec.resources.workers_per_trial == 1


def broker_name(exp_name: str) -> str:
    return f"paradis-cores-{exp_name}"


def say_budget(tracker: Tracker, parent: str, spec: StudySpec, records: list[TrialRecord]) -> None:
    """The study run and the console say that the time budget ended the study, and what it left."""
    line = budget_line(spec, records)
    tracker.set_tags(parent, {tag_names.ENDED: line})
    print(f"\n[paradis] {line}")


def tag_endings(tracker: Tracker, parent: str, records: list[TrialRecord]) -> None:
    """Each trial run says what ended it and how many epochs it trained (``status`` and the report read it)."""
    runs = {trial_id: (run_id, status) for run_id, trial_id, status in tracker.trial_runs(parent)}
    for r in records:
        if r.trial_id in runs:
            run_id, status = runs[r.trial_id]
            tracker.set_tags(run_id, {tag_names.ENDED: r.ended, tag_names.EPOCHS: str(r.epochs or 0)})
            if status == "RUNNING" and r.ended in ("budget", "not started"):  # Tune stopped it without a word
                tracker.finish(run_id, "KILLED")


def budget_line(spec: StudySpec, records: list[TrialRecord]) -> str:
    stopped = sum(r.ended == "budget" for r in records)
    never = sum(r.ended == "not started" for r in records) + max(0, trial_count(spec) - len(records))
    return (
        f"time budget of {spec.search.time_budget_s:g} s reached: {sum(r.complete for r in records)} of "
        f"{trial_count(spec)} trials finished, {stopped} stopped by the budget, {never} never started"
    )


def _new_tuner(spec: StudySpec, spec_text: str, source: str, tracker: Tracker, trainable_for, uri: str):
    """A new experiment folder, the study's tracking run and its Tuner: ``(tuner, folder, run id)``."""
    storage = spec.resolved_storage_path()
    storage.mkdir(parents=True, exist_ok=True)
    exp_name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    exp_dir = storage / exp_name
    exp_dir.mkdir(mode=0o755)
    optuna_url = optuna_storage(spec, uri)
    parent = _start_tracking(spec, spec_text, source, tracker, exp_dir)
    if optuna_url:  # optuna-dashboard URL, optuna.load_study(study_name=..., storage=URL)
        tracker.set_tags(parent, {tag_names.OPTUNA_STORAGE: optuna_url, tag_names.OPTUNA_STUDY: exp_name})
    tuner = _tuner(spec, tracker, trainable_for(exp_name), exp_name, optuna_url, source)
    (exp_dir / STATE_FILE).write_text(json.dumps({"parent_run_id": parent, "uri": uri}))
    return tuner, exp_dir, parent


def _interrupted(tracker: Tracker, parent: str, spec: StudySpec, records, stopped, source: str) -> int:
    """An interrupted study ends as such: its run and the interrupted trials' runs KILLED, a line saying
    how to resume, and exit status 130."""
    how = f"python orchestration/run_study.py {source} --resume"
    done, total = sum(r.status == "TERMINATED" for r in records), trial_count(spec)
    tracker.set_tags(
        parent, {tag_names.ERROR: f"interrupted with {done} of {total} trials finished; resume with: {how}"}
    )
    runs = {trial_id: run_id for run_id, trial_id, _ in tracker.trial_runs(parent)}
    for r in stopped:
        if r.trial_id in runs:
            tracker.set_tags(runs[r.trial_id], {tag_names.ERROR: "interrupted; --resume continues it"})
            tracker.finish(runs[r.trial_id], "KILLED")
    print(f"\n[paradis] study interrupted: {done} of {total} trials finished; resume with: {how}")
    return 130


def close_lost_trials(tracker: Tracker, parent: str, known: set[str]) -> None:
    """Child runs still open whose trial Tune no longer knows (a driver killed after the trial started
    but before Tune recorded it; its suggestion is made again on resume) end KILLED, with the reason."""
    for run_id, trial_id, status in tracker.trial_runs(parent):
        if status == "RUNNING" and trial_id not in known:
            reason = "lost: the driver was killed before Ray Tune recorded this trial; it was not resumed"
            tracker.set_tags(run_id, {tag_names.ERROR: reason})
            tracker.finish(run_id, "KILLED")


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
        listed = trials(spec)
        lines.append(f"{len(listed) * spec.search.samples} trial(s):")
        for i, trial in enumerate(listed):
            p, cfg = trial.params, trial.config
            shown = {**spec.search.variants.get(p.get("variant"), {}), **p}
            desc = ", ".join(f"{k}={v}" for k, v in shown.items() if k != "variant")
            front = " (front)" if spec.front is not None and cfg.data.holdout else ""
            lines.append(
                f"  {p.get('variant', f'trial {i}')}: {describe_method(cfg.training)}{front}; "
                f"switches {', '.join(cfg.training.switches)}" + (f"; {desc}" if desc else "")
            )
    lines += SEARCHES[spec.search.kind].describe(spec, 5)
    return "\n".join(lines)

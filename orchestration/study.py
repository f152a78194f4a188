"""Running a study on Ray Tune: search space, scheduler, the MLflow callback, resume, the study table."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestration.report import TrialRecord, study_markdown
from orchestration.spec import ParamSpec, StudySpec, check_resources, grid_points, run_config_for
from orchestration.tracking import StudyTracker, trial_metrics
from orchestration.trainable import FAILED_KEY
from paradis.training import MethodPlanner, describe_method

STATE_FILE = "paradis_study.json"


class NothingToResume(LookupError):
    """``--resume`` found no interrupted run of the study."""


# --- search ----------------------------------------------------------------------------------------
class OptunaSpace:
    """Define-by-run search space for OptunaSearch (a class, so that Tune can pickle the searcher)."""

    def __init__(self, space: dict[str, ParamSpec]):
        self.space = {k: v.model_dump(exclude_none=True) for k, v in space.items()}

    def __call__(self, trial) -> None:
        for key, p in self.space.items():
            if "choice" in p or "grid" in p:
                trial.suggest_categorical(key, p.get("choice") or p.get("grid"))
            elif "uniform" in p:
                trial.suggest_float(key, *p["uniform"])
            elif "loguniform" in p:
                trial.suggest_float(key, *p["loguniform"], log=True)
            else:
                trial.suggest_int(key, *p["int"])


def trial_name(trial) -> str:
    variant = trial.config.get("variant")
    return f"{variant}_{trial.trial_id}" if variant else f"trial_{trial.trial_id}"


def tune_setup(spec: StudySpec):
    """``(param_space, TuneConfig)`` for the spec's search and scheduler."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    search, sched = spec.search, spec.scheduler
    objectives = search.objectives
    single = len(objectives) == 1
    asha_own_metric = sched.kind == "asha" and not (
        single and objectives[0].metric == sched.metric and objectives[0].mode == sched.mode
    )
    tune_metric = dict(metric=objectives[0].metric, mode=objectives[0].mode) if single and not asha_own_metric else {}
    scheduler = None
    if sched.kind == "asha":
        own = dict(metric=sched.metric, mode=sched.mode) if asha_own_metric else {}
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=spec.training.epochs,
            grace_period=sched.grace_period,
            reduction_factor=sched.reduction_factor,
            **own,
        )
    if search.kind == "grid":
        space: dict[str, Any] = {k: tune.grid_search(p.values()) for k, p in search.space.items()}
        if search.variants:
            space = {"variant": tune.grid_search(list(search.variants)), **space}
        searcher = None
    else:
        space = {}
        sampler = (
            optuna.samplers.NSGAIISampler(seed=search.seed)
            if search.sampler == "nsga2"
            else optuna.samplers.TPESampler(seed=search.seed)
        )
        searcher = OptunaSearch(
            OptunaSpace(search.space),
            # a searcher with its own space ignores TuneConfig's metric: always give it the objectives
            metric=[o.metric for o in objectives] if not single else objectives[0].metric,
            mode=[o.mode for o in objectives] if not single else objectives[0].mode,
            sampler=sampler,
        )
    tune_config = tune.TuneConfig(
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=search.samples,
        max_concurrent_trials=spec.resources.max_concurrent_trials,
        trial_name_creator=trial_name,
        trial_dirname_creator=trial_name,
        # one-worker trials train in the trial process: reusing it saves a process start and the import
        # of torch per trial (benchmarks/orchestration_overhead.py)
        reuse_actors=spec.resources.workers_per_trial == 1,
        **tune_metric,
    )
    return space, tune_config


def trial_resources(spec: StudySpec) -> dict[str, float]:
    res = spec.resources
    if res.workers_per_trial > 1:
        return {"cpu": 0.1}  # the trial only drives a TorchTrainer, whose workers get their own resources
    out = {"cpu": res.cpus_per_worker}
    if res.gpus_per_worker:
        out["gpu"] = res.gpus_per_worker
    return out


# --- the MLflow callback ---------------------------------------------------------------------------
def mlflow_callback(tracker: StudyTracker, spec_json: str):
    from ray import tune

    class MlflowStudyCallback(tune.Callback):
        """Logs each trial as a child run of the study's run; never lets tracking kill training."""

        def __init__(self):
            self.tracker, self.spec_json = tracker, spec_json
            self.runs: dict[str, str] = {}
            self.node_ips: dict[str, str] = {}
            self.tables: dict[str, str] = {}  # the newest switch table of each trial

        def _run(self, trial) -> str:
            if trial.trial_id not in self.runs:
                spec = StudySpec.model_validate_json(self.spec_json)
                cfg = run_config_for(spec, trial.config)
                self.runs[trial.trial_id] = self.tracker.child_run(
                    trial.trial_id, trial_name(trial), cfg.model_dump(mode="json"), dict(trial.config)
                )
            return self.runs[trial.trial_id]

        def _safely(self, what: str, fn, *args) -> None:
            try:
                fn(*args)
            except Exception as err:  # tracking must not stop the study
                print(f"[paradis] MLflow: could not {what}: {type(err).__name__}: {err}", file=sys.stderr)

        def on_trial_start(self, iteration, trials, trial, **info):
            self._safely("open the trial's run", self._run, trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            def log():
                step = int(result.get("epoch", result.get("training_iteration", 0)))
                run_id = self._run(trial)
                if result.get("table"):
                    self.tables[trial.trial_id] = result["table"]
                if result.get(FAILED_KEY):
                    return
                self.tracker.log_metrics(run_id, trial_metrics(result), step)
                if result.get("node_ip") and self.node_ips.get(trial.trial_id) != result["node_ip"]:
                    self.node_ips[trial.trial_id] = result["node_ip"]
                    self.tracker.client.set_tag(run_id, "paradis.node_ip", result["node_ip"])

            self._safely("log metrics", log)

        def on_trial_complete(self, iteration, trials, trial, **info):
            def log():
                from paradis.evaluation import SwitchResult, table_csv, table_markdown

                run_id = self._run(trial)
                last = trial.last_result or {}
                table = last.get("table") or self.tables.get(trial.trial_id)
                rows = json.loads(table or "[]")
                results = [SwitchResult(**r) for r in rows]
                if rows:
                    self.tracker.log_trial_table(run_id, rows, table_markdown(results), table_csv(results))
                ckpt = last.get("checkpoint_path") or (trial.checkpoint.path if trial.checkpoint else None)
                self.tracker.log_checkpoint(run_id, ckpt)
                self.tracker.client.set_tag(run_id, "paradis.restarts", str(trial.num_failures))
                if last.get(FAILED_KEY):
                    self.tracker.client.set_tag(run_id, "paradis.error", last[FAILED_KEY])
                    self.tracker.finish(run_id, "FAILED")
                else:
                    self.tracker.finish(run_id, "FINISHED")

            self._safely("close the trial's run", log)

        def on_trial_error(self, iteration, trials, trial, **info):
            def log():
                run_id = self._run(trial)
                error = _error_text(trial)
                self.tracker.client.set_tag(run_id, "paradis.error", error[-5000:])
                self.tracker.finish(run_id, "FAILED")

            self._safely("mark the trial failed", log)

    return MlflowStudyCallback()


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return Path(path).read_text(errors="replace")
    return str(getattr(trial, "error_msg", "") or "failed")


# --- running ---------------------------------------------------------------------------------------
def experiment_dirs(spec: StudySpec) -> list[Path]:
    root = spec.resolved_storage_path()
    if not root.is_dir():
        return []
    pattern = re.compile(re.escape(spec.name) + r"-\d{8}-\d{6}$")
    return sorted((p for p in root.iterdir() if p.is_dir() and pattern.match(p.name)), key=lambda p: p.name)


def progress_reporter(spec: StudySpec):
    from ray import tune

    base = run_config_for(spec, {})
    switches = base.evaluation.switches or [str(s) for s in MethodPlanner(base.training).trained_switches]
    metrics = {"epoch": "epoch", "loss": "loss"}
    measure = "psnr" if base.task == "super-resolution" else "acc"
    metrics.update({f"{measure}/{s.strip('[]').replace(', ', '-')}": f"{measure} {s}" for s in switches})
    params = list(spec.search.space) + (["variant"] if spec.search.variants else [])
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=params, max_report_frequency=30)


def records_from(results, spec: StudySpec) -> list[TrialRecord]:
    records = []
    for result in results:
        metrics = result.metrics or {}
        config = result.config or {}
        try:
            label = describe_method(run_config_for(spec, config).training)
        except Exception:
            label = "?"
        table = metrics.get("table")
        if table is None and result.metrics_dataframe is not None and "table" in result.metrics_dataframe:
            tables = result.metrics_dataframe["table"].dropna()
            table = tables.iloc[-1] if len(tables) else None
        rows = json.loads(table) if table else []
        searched = {k: v for k, v in config.items()}
        status = "ERROR" if result.error else ("FAILED" if metrics.get(FAILED_KEY) else "TERMINATED")
        name = Path(result.path).name if result.path else metrics.get("trial_id", "?")
        records.append(
            TrialRecord(
                metrics.get("trial_id", name),
                name,
                label,
                searched,
                rows,
                status,
                str(result.error)[:500] if result.error else metrics.get(FAILED_KEY),
            )
        )
    records.sort(key=lambda r: r.name)
    return records


def run_study(
    spec: StudySpec,
    spec_text: str,
    source: str,
    *,
    uri: str,
    resume: bool = False,
    address: str | None = None,
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
    spec_json = spec.model_dump_json()
    trainable = tune.with_resources(tune.with_parameters(study_trial, spec_json=spec_json), trial_resources(spec))

    if resume:
        candidates = [p for p in experiment_dirs(spec) if tune.Tuner.can_restore(str(p))]
        if not candidates:
            raise NothingToResume(f"no interrupted study {spec.name!r} under {storage} to resume")
        exp_dir = candidates[-1]
        state = json.loads((exp_dir / STATE_FILE).read_text())
        tracker = StudyTracker.start(uri, spec, spec_text, source, resume_run_id=state["parent_run_id"])
        print(f"[paradis] resuming {exp_dir}")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
    else:
        exp_name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        exp_dir = storage / exp_name
        tracker = StudyTracker.start(uri, spec, spec_text, source)
        space, tune_config = tune_setup(spec)
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune_config,
            run_config=tune.RunConfig(
                name=exp_name,
                storage_path=str(storage),
                failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[mlflow_callback(tracker, spec_json)],
                progress_reporter=progress_reporter(spec),
                verbose=1,
            ),
        )
        exp_dir.mkdir(parents=True, exist_ok=True)
        (exp_dir / STATE_FILE).write_text(json.dumps({"parent_run_id": tracker.parent_run_id, "uri": uri}))
    print(f"[paradis] study {spec.name}: MLflow run {tracker.parent_run_id} in {uri}; Ray results in {exp_dir}")
    results = tuner.fit()
    records = records_from(results, spec)
    title = f"{spec.name}: {spec.description}".strip().rstrip(":")
    with tempfile.TemporaryDirectory() as d:
        tracker.log_study(records, title, Path(d))
    failed = sum(r.status != "TERMINATED" for r in records)
    tracker.finish(tracker.parent_run_id, "FINISHED" if not failed else "FAILED")
    print()
    print(study_markdown(records, title))
    print(
        f"\n[paradis] {len(records) - failed} of {len(records)} trials finished; "
        f"open the MLflow UI with: mlflow ui --backend-store-uri {uri}"
    )
    return 0 if not failed else 1


def dry_run_text(spec: StudySpec) -> str:
    """The resolved trials, without starting Ray."""
    lines = [f"study {spec.name}: {spec.search.kind} search, {spec.search.samples} sample(s)"]
    base = run_config_for(spec, {})
    t = base.training
    lines.append(
        f"base: {spec.model.name} on {spec.data.name}, method {t.method}, distillation {t.distillation}, "
        f"switches {', '.join(t.switches)}, wide factor {t.wide_factor:g}, beta {t.beta:g}, {t.epochs} epoch(s), "
        f"batch {t.batch_size}, lr {t.optimizer.lr:g} ({t.schedule.kind})"
    )
    lines.append(
        f"resources: {spec.resources.workers_per_trial} worker(s) per trial x {spec.resources.cpus_per_worker:g} CPU"
        f" + {spec.resources.gpus_per_worker:g} GPU; scheduler {spec.scheduler.kind}"
        + (
            f" on {spec.scheduler.metric} (grace {spec.scheduler.grace_period})"
            if spec.scheduler.kind == "asha"
            else ""
        )
    )
    if spec.search.kind == "grid":
        points = grid_points(spec)
        lines.append(f"{len(points) * spec.search.samples} trial(s):")
        for i, p in enumerate(points):
            cfg = run_config_for(spec, p)
            shown = {**spec.search.variants.get(p.get("variant"), {}), **p}
            desc = ", ".join(f"{k}={v}" for k, v in shown.items() if k != "variant")
            name = p.get("variant", f"trial {i}")
            lines.append(
                f"  {name}: {describe_method(cfg.training)}; switches {', '.join(cfg.training.switches)}"
                + (f"; {desc}" if desc else "")
            )
    else:
        objs = ", ".join(f"{o.mode} {o.metric}" for o in spec.search.objectives)
        lines.append(
            f"{spec.search.samples} trial(s) suggested by Optuna ({spec.search.sampler}, seed "
            f"{spec.search.seed}) to {objs}, over:"
        )
        for key, p in spec.search.space.items():
            lines.append(f"  {key}: {p.kind} {p.values()}")
        lines.append("first suggestions (before any feedback):")
        for i, params in enumerate(first_suggestions(spec, min(spec.search.samples, 5))):
            lines.append(f"  trial {i}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    return "\n".join(lines)


def first_suggestions(spec: StudySpec, n: int) -> list[dict[str, Any]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.NSGAIISampler(seed=spec.search.seed)
        if spec.search.sampler == "nsga2"
        else optuna.samplers.TPESampler(seed=spec.search.seed)
    )
    directions = ["maximize" if o.mode == "max" else "minimize" for o in spec.search.objectives]
    study = optuna.create_study(directions=directions, sampler=sampler)
    space = OptunaSpace(spec.search.space)
    out = []
    for _ in range(n):
        trial = study.ask()
        space(trial)
        out.append(dict(trial.params))
    return out

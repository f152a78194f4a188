"""The Ray Tune callback that logs each trial as a child run of the study's run, through the tracking
interface only. Tracking never stops a study: a failing call is reported on stderr and skipped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orchestration.tracking.tag_names as tag_names
from orchestration.tracking.base import Tracker, data_of, trial_metrics
from orchestration.trials import trial_name
from paradis.methods import describe_method

FAILED_KEY = "failed_reason"  # a trial's last report names why it ended failed (not retried)


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return Path(path).read_text(errors="replace")
    return str(getattr(trial, "error_msg", "") or "failed")


class TrialRuns:
    """What the callback does, Ray-free: one tracking run per trial, opened on its first event, its
    metrics per report, its tables, front and checkpoint at the end."""

    def __init__(self, tracker: Tracker, config_of, tags: dict[str, str], checkpoints: str = "final"):
        self.tracker, self.config_of, self.tags = tracker, config_of, tags
        self.checkpoints = checkpoints  # tracking.checkpoints: none, final or all
        self.runs: dict[str, str] = {}
        self.node_ips: dict[str, str] = {}
        self.tables: dict[str, str] = {}  # the newest switch table of each trial

    def run(self, trial) -> str:
        if trial.trial_id not in self.runs:
            cfg = self.config_of(trial.config)
            params = {**cfg.model_dump(mode="json"), **{f"search.{k}": v for k, v in trial.config.items()}}
            # The report (orchestration.report.studies) rebuilds the study's records from these two.
            labels = {
                tag_names.METHOD: describe_method(cfg.training),
                tag_names.SEARCH: json.dumps(trial.config, default=str),
            }
            run_id = self.tracker.start_trial(
                trial.trial_id, trial_name(trial.config, trial.trial_id), params, {**self.tags, **labels}
            )
            self.tracker.log_dataset(run_id, *data_of(cfg))
            self.runs[trial.trial_id] = run_id
        return self.runs[trial.trial_id]

    def log_result(self, trial, result) -> None:
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        run_id = self.run(trial)
        if result.get("table"):
            self.tables[trial.trial_id] = result["table"]
        if result.get(FAILED_KEY):
            return
        self.tracker.log_metrics(run_id, trial_metrics(result), step)
        if result.get("node_ip") and self.node_ips.get(trial.trial_id) != result["node_ip"]:
            self.node_ips[trial.trial_id] = result["node_ip"]
            self.tracker.set_tags(run_id, {tag_names.NODE_IP: result["node_ip"]})

    def complete(self, trial) -> None:
        run_id, last = self.run(trial), trial.last_result or {}
        self._log_outputs(run_id, trial, last)
        self.tracker.set_tags(run_id, {tag_names.RESTARTS: str(trial.num_failures)})
        if last.get(FAILED_KEY):
            self.tracker.set_tags(run_id, {tag_names.ERROR: last[FAILED_KEY]})
        self.tracker.finish(run_id, "FAILED" if last.get(FAILED_KEY) else "FINISHED")

    def _log_outputs(self, run_id: str, trial, last: dict) -> None:
        from paradis.engine.evaluation import SwitchResult, table_csv, table_markdown

        rows = json.loads(last.get("table") or self.tables.get(trial.trial_id) or "[]")
        if rows:
            fields = set(SwitchResult.__dataclass_fields__)
            results = [SwitchResult(**{k: v for k, v in r.items() if k in fields}) for r in rows]
            self.tracker.log_table(run_id, rows, "table/switches.json")
            self.tracker.log_text(run_id, table_markdown(results), "table/switches.md")
            self.tracker.log_text(run_id, table_csv(results), "table/switches.csv")
        if last.get("front"):
            front = json.loads(last["front"])
            self.tracker.log_table(run_id, front["points"], "front/front.json")
            self.tracker.log_text(run_id, json.dumps(front["evaluated"], indent=1), "front/evaluated.json")
        ckpt = last.get("checkpoint_path") or (trial.checkpoint.path if trial.checkpoint else None)
        if self.checkpoints != "none" and ckpt:
            for checkpoint, folder in _trained_models(Path(ckpt)):
                # the run is closed whatever happens here (a damaged file, a full /tmp, an upload error)
                _safely("log the trained model", self._log_checkpoint, run_id, checkpoint, folder)

    def _log_checkpoint(self, run_id: str, checkpoint: Path, folder: str = "checkpoint") -> None:
        """``<folder>/model.pt`` (the trained model alone: what deploy loads), and with ``all`` the full
        resumable ``<folder>/checkpoint.pt``."""
        import tempfile

        from paradis.engine.checkpoint import write_model_file

        with tempfile.TemporaryDirectory(prefix="paradis-model-") as d:
            write_model_file(checkpoint, Path(d) / "model.pt")
            self.tracker.log_artifact(run_id, str(Path(d) / "model.pt"), folder)
        if self.checkpoints == "all":
            self.tracker.log_artifact(run_id, str(checkpoint), folder)

    def error(self, trial) -> None:
        run_id = self.run(trial)
        self.tracker.set_tags(run_id, {tag_names.ERROR: _error_text(trial)[-5000:]})
        self.tracker.finish(run_id, "FAILED")


def _trained_models(folder: Path) -> list[tuple[Path, str]]:
    """A trial checkpoint's ``checkpoint.pt`` files and the artifact folder of each: ``checkpoint``, or
    for a trial of several seeds (an Optuna trial with ``repeats``) ``checkpoint/seed<k>`` per seed."""
    if (folder / "checkpoint.pt").is_file():
        return [(folder / "checkpoint.pt", "checkpoint")]
    seeds = sorted(p for p in folder.glob("seed*/checkpoint.pt") if p.parent.name[4:].isdigit())
    return [(p, f"checkpoint/{p.parent.name}") for p in sorted(seeds, key=lambda p: int(p.parent.name[4:]))]


def _safely(what: str, fn, *args) -> None:
    try:
        fn(*args)
    except Exception as err:  # tracking must not stop the study
        print(f"[paradis] tracking: could not {what}: {type(err).__name__}: {err}", file=sys.stderr)


def tracking_callback(tracker: Tracker, config_of, tags: dict[str, str], checkpoints: str = "final"):
    """``config_of(trial config)``: the run configuration it stands for (logged as params and data);
    ``checkpoints``: what of a trial's checkpoint reaches the store (``tracking.checkpoints``)."""
    from ray import tune

    class TrackingCallback(tune.Callback):
        def __init__(self):
            self.trials = TrialRuns(tracker, config_of, tags, checkpoints)

        def on_trial_start(self, iteration, trials, trial, **info):
            _safely("open the trial's run", self.trials.run, trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            _safely("log metrics", self.trials.log_result, trial, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            _safely("close the trial's run", self.trials.complete, trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            _safely("mark the trial failed", self.trials.error, trial)

    return TrackingCallback()

"""The Ray Tune callback that logs each trial as a child run of the study's run, through the tracking
interface only. Tracking never stops a study: a failing call is reported on stderr and skipped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orchestration.tracking.base import Tracker, data_of, trial_metrics
from orchestration.trials import trial_name
from paradis.methods import describe_method

FAILED_KEY = "failed_reason"  # a trial's last report names why it ended failed (not retried)


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return Path(path).read_text(errors="replace")
    return str(getattr(trial, "error_msg", "") or "failed")


def tracking_callback(tracker: Tracker, config_of, tags: dict[str, str]):
    """``config_of(trial config)``: the run configuration it stands for (logged as params and data)."""
    from ray import tune

    class TrackingCallback(tune.Callback):
        def __init__(self):
            self.runs: dict[str, str] = {}
            self.node_ips: dict[str, str] = {}
            self.tables: dict[str, str] = {}  # the newest switch table of each trial

        def _run(self, trial) -> str:
            if trial.trial_id not in self.runs:
                cfg = config_of(trial.config)
                params = {**cfg.model_dump(mode="json"), **{f"search.{k}": v for k, v in trial.config.items()}}
                # The report (orchestration.report.results) rebuilds the study's records from these two.
                labels = {
                    "paradis.method": describe_method(cfg.training),
                    "paradis.search": json.dumps(trial.config, default=str),
                }
                run_id = tracker.start_trial(
                    trial.trial_id, trial_name(trial.config, trial.trial_id), params, {**tags, **labels}
                )
                tracker.log_dataset(run_id, *data_of(cfg))
                self.runs[trial.trial_id] = run_id
            return self.runs[trial.trial_id]

        def _safely(self, what: str, fn, *args) -> None:
            try:
                fn(*args)
            except Exception as err:  # tracking must not stop the study
                print(f"[paradis] tracking: could not {what}: {type(err).__name__}: {err}", file=sys.stderr)

        def on_trial_start(self, iteration, trials, trial, **info):
            self._safely("open the trial's run", self._run, trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self._safely("log metrics", self._log_result, trial, result)

        def _log_result(self, trial, result) -> None:
            step = int(result.get("epoch", result.get("training_iteration", 0)))
            run_id = self._run(trial)
            if result.get("table"):
                self.tables[trial.trial_id] = result["table"]
            if result.get(FAILED_KEY):
                return
            tracker.log_metrics(run_id, trial_metrics(result), step)
            if result.get("node_ip") and self.node_ips.get(trial.trial_id) != result["node_ip"]:
                self.node_ips[trial.trial_id] = result["node_ip"]
                tracker.set_tags(run_id, {"paradis.node_ip": result["node_ip"]})

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._safely("close the trial's run", self._complete, trial)

        def _complete(self, trial) -> None:
            from paradis.engine.evaluation import SwitchResult, table_csv, table_markdown

            run_id = self._run(trial)
            last = trial.last_result or {}
            rows = json.loads(last.get("table") or self.tables.get(trial.trial_id) or "[]")
            if rows:
                fields = set(SwitchResult.__dataclass_fields__)
                results = [SwitchResult(**{k: v for k, v in r.items() if k in fields}) for r in rows]
                tracker.log_table(run_id, rows, "table/switches.json")
                tracker.log_text(run_id, table_markdown(results), "table/switches.md")
                tracker.log_text(run_id, table_csv(results), "table/switches.csv")
            if last.get("front"):
                front = json.loads(last["front"])
                tracker.log_table(run_id, front["points"], "front/front.json")
                tracker.log_text(run_id, json.dumps(front["evaluated"], indent=1), "front/evaluated.json")
            ckpt = last.get("checkpoint_path") or (trial.checkpoint.path if trial.checkpoint else None)
            if ckpt and Path(ckpt, "checkpoint.pt").is_file():
                tracker.log_artifact(run_id, str(Path(ckpt, "checkpoint.pt")), "checkpoint")
            tracker.set_tags(run_id, {"paradis.restarts": str(trial.num_failures)})
            if last.get(FAILED_KEY):
                tracker.set_tags(run_id, {"paradis.error": last[FAILED_KEY]})
            tracker.finish(run_id, "FAILED" if last.get(FAILED_KEY) else "FINISHED")

        def on_trial_error(self, iteration, trials, trial, **info):
            def log():
                run_id = self._run(trial)
                tracker.set_tags(run_id, {"paradis.error": _error_text(trial)[-5000:]})
                tracker.finish(run_id, "FAILED")

            self._safely("mark the trial failed", log)

    return TrackingCallback()

"""MLflow tracking of a study: one parent run per study, one nested child run per trial.

All logging happens in the driver (a Ray Tune callback), through an explicit ``MlflowClient``, so
trials never need to reach the tracking store and nothing depends on MLflow's global state.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestration.report import TrialRecord
from orchestration.spec import StudySpec, paradis_home

METRIC_PREFIXES = ("acc/", "top5/", "psnr/", "loss", "device_macs/", "macs/")
METRIC_KEYS = ("lr", "epoch_seconds", "samples_per_second", "eval_seconds")


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used."""


def resolve_tracking_uri(spec: StudySpec) -> str:
    """The spec's URI, else ``MLFLOW_TRACKING_URI``, else an sqlite file at an absolute path."""
    uri = spec.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            # a relative sqlite path would follow the job's temporary working directory
            uri = "sqlite:///" + str(Path(uri[len("sqlite:///") :]).expanduser().resolve())
        return uri
    db = paradis_home() / "mlflow.db"
    return f"sqlite:///{db}"


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a local store go beside its database (never into the working directory);
    a tracking server decides for itself."""
    if uri.startswith("sqlite:///"):
        root = Path(uri[len("sqlite:///") :]).parent / "mlartifacts" / experiment
        return root.as_uri()
    return None


def make_client(uri: str):
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def check_tracking(uri: str, timeout_s: float = 20.0) -> None:
    """Fail early, before any training, if the store cannot be reached."""
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout_s))}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        make_client(uri).search_experiments(max_results=1)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrackingError(f"MLflow tracking store {uri} is not reachable: {first[:300]}") from None
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ensure_experiment(client, uri: str, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(uri, name))


def git_commit(cwd: str | Path | None = None) -> str:
    if os.environ.get("PARADIS_GIT_COMMIT"):
        return os.environ["PARADIS_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else v
    return out


def trial_metrics(result: dict) -> dict[str, float]:
    """The numeric metrics of a trial's report that belong in MLflow."""
    out = {}
    for k, v in result.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if k.startswith(METRIC_PREFIXES) or k in METRIC_KEYS:
            out[k] = float(v)
    return out


def _log_text(client, run_id: str, text: str, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / Path(artifact_file).name
        path.write_text(text)
        sub = str(Path(artifact_file).parent)
        client.log_artifact(run_id, str(path), None if sub == "." else sub)


def _retry(fn, *args, attempts: int = 5, delay: float = 1.0, **kwargs):
    """Tracking calls are retried through short outages; training is never killed by them."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception:
            if i == attempts - 1:
                raise
            time.sleep(delay * (2**i))
    return None


class StudyTracker:
    """Opens the parent run and the trials' child runs. Picklable: the client is made on demand."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, study_name: str):
        self.uri, self.experiment_id = uri, experiment_id
        self.parent_run_id, self.study_name = parent_run_id, study_name
        self._client = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.uri)
        return self._client

    @classmethod
    def start(
        cls, uri: str, spec: StudySpec, spec_text: str, source: str, *, resume_run_id: str | None = None
    ) -> StudyTracker:
        client = make_client(uri)
        exp_id = ensure_experiment(client, uri, spec.experiment_name())
        if resume_run_id:
            client.update_run(resume_run_id, status="RUNNING")
            tracker = cls(uri, exp_id, resume_run_id, spec.name)
            tracker._client = client
            return tracker
        run = client.create_run(
            exp_id,
            run_name=spec.name,
            tags={
                "paradis.study": spec.name,
                "paradis.role": "study",
                "paradis.git_commit": git_commit(Path(source).parent),
                "paradis.search": spec.search.kind,
                "mlflow.note.content": spec.description,
            },
        )
        _log_text(client, run.info.run_id, spec_text, "spec/study.yaml")
        _log_text(client, run.info.run_id, json.dumps(spec.model_dump(mode="json"), indent=1), "spec/resolved.json")
        tracker = cls(uri, exp_id, run.info.run_id, spec.name)
        tracker._client = client
        return tracker

    # --- child runs ----------------------------------------------------------------------------
    def child_run(self, trial_id: str, name: str, params: dict[str, Any], searched: dict[str, Any]) -> str:
        """The child run of a trial, created once (a resumed study finds it again)."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`paradis.trial_id` = '{trial_id}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"
            ),
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            if found[0].info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "paradis.study": self.study_name,
                "paradis.trial_id": trial_id,
                "paradis.role": "trial",
            },
        )
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        items += [Param(f"search.{k}", str(v)[:6000]) for k, v in searched.items()]
        for i in range(0, len(items), 100):
            _retry(self.client.log_batch, run.info.run_id, params=items[i : i + 100])
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in metrics.items()]
        if batch:
            _retry(self.client.log_batch, run_id, metrics=batch)

    def log_trial_table(self, run_id: str, rows: list[dict], markdown: str, csv_text: str) -> None:
        if rows:
            table = {k: [r.get(k) for r in rows] for k in rows[0]}
            _retry(self.client.log_table, run_id, data=table, artifact_file="table/switches.json")
        _log_text(self.client, run_id, markdown, "table/switches.md")
        _log_text(self.client, run_id, csv_text, "table/switches.csv")

    def log_checkpoint(self, run_id: str, checkpoint_dir: str | None) -> None:
        if checkpoint_dir and Path(checkpoint_dir, "checkpoint.pt").is_file():
            _retry(self.client.log_artifact, run_id, str(Path(checkpoint_dir, "checkpoint.pt")), "checkpoint")

    def finish(self, run_id: str, status: str) -> None:
        _retry(self.client.set_terminated, run_id, status)

    # --- parent --------------------------------------------------------------------------------
    def log_study(self, records: list[TrialRecord], title: str, plot_dir: Path) -> None:
        from orchestration.report import is_sr, study_csv, study_markdown, study_plot, study_rows

        header, rows = study_rows(records)
        if rows:
            table = {k: [r.get(k) for r in rows] for k in header}
            self.client.log_table(self.parent_run_id, data=table, artifact_file="study/table.json")
        _log_text(self.client, self.parent_run_id, study_markdown(records, title), "study/table.md")
        _log_text(self.client, self.parent_run_id, study_csv(records), "study/table.csv")
        plot_name = "psnr_vs_macs.png" if is_sr(records) else "accuracy_vs_macs.png"
        plot = study_plot(records, plot_dir / plot_name, title)
        self.client.log_artifact(self.parent_run_id, str(plot), "study")
        done = sum(r.status == "TERMINATED" for r in records)
        self.client.log_metric(self.parent_run_id, "trials_finished", done)
        self.client.log_metric(self.parent_run_id, "trials_failed", sum(r.status == "ERROR" for r in records))

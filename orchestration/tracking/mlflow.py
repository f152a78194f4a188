"""The MLflow implementation of the tracking interface: one parent run per study, one nested child
run per trial, all through an explicit ``MlflowClient`` (nothing depends on MLflow's global state),
every call retried through short outages."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import orchestration.tracking.tag_names as tag_names
from orchestration.tracking.base import TrackingError, flatten
from paradis.util import first_line

TABLE_LIMIT = 50_000_000  # bytes: a logged table is read whole


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a local store go beside its database (never into the working directory);
    a tracking server decides for itself."""
    if uri.startswith("sqlite:///"):
        root = Path(uri[len("sqlite:///") :]).parent / "mlartifacts" / experiment
        return root.as_uri()
    return None


def make_client(uri: str):
    # artifact downloads draw a progress bar on stderr, which would break a CLI's one-line refusal
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
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
        raise TrackingError(f"MLflow tracking store {uri} is not reachable: {first_line(err)}") from None
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}


def transient(err: BaseException) -> bool:
    """Whether a tracking call may succeed if tried again: the server or the network failed (a lost
    connection, a timeout, an HTTP 5xx or 429, a locked sqlite store), not the request (a 4xx, a bad
    value, a missing run: retrying those only delays the same error)."""
    from mlflow.exceptions import MlflowException

    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    if isinstance(err, OSError) and type(err).__module__.split(".")[0] in ("requests", "urllib3"):
        return True  # requests' ConnectionError and Timeout (OSErrors of the HTTP client)
    if isinstance(err, MlflowException):
        status = err.get_http_status_code()
        return err.error_code in TRANSIENT_CODES or status >= 500 or status == 429 or "locked" in str(err)
    return "database is locked" in str(err)  # sqlite under concurrent writers (SQLAlchemy's OperationalError)


def _retry(fn, *args, attempts: int = 5, delay: float = 1.0, **kwargs):
    """Tracking calls are retried through short outages (transient errors only, exponential backoff with
    jitter so that many trials do not retry in step); training is never killed by them."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if i == attempts - 1 or not transient(err):
                raise
            time.sleep(delay * (2**i) * random.uniform(0.5, 1.5))
    return None


def _study_run_dict(run, experiment: str) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "experiment": experiment,
        "status": run.info.status,
        "start_ms": run.info.start_time,
        "end_ms": run.info.end_time,
        "tags": dict(run.data.tags),
    }


class MlflowTracker:
    """:class:`orchestration.tracking.base.Tracker` on MLflow. Picklable: the client is made on demand."""

    def __init__(self, uri: str, experiment: str, parent_run_id: str | None = None):
        self.uri, self.experiment = uri, experiment
        self.parent_run_id = parent_run_id
        self._client = None
        self._experiment_id: str | None = None

    def __getstate__(self):
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                self._experiment_id = self.client.create_experiment(
                    self.experiment, artifact_location=artifact_location(self.uri, self.experiment)
                )
            else:
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    # --- runs ------------------------------------------------------------------------------------
    def start_study(self, name: str, tags: dict[str, str], texts: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={tag_names.ROLE: "study", **tags})
        self.parent_run_id = run.info.run_id
        for path, text in texts.items():
            self.log_text(self.parent_run_id, text, path)
        return self.parent_run_id

    def resume_study(self, run_id: str) -> None:
        self.parent_run_id = run_id
        _retry(self.client.update_run, run_id, status="RUNNING")

    def start_trial(self, key: str, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{tag_names.TRIAL_ID}` = '{key}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"
            ),
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            if found[0].info.status != "RUNNING":
                _retry(self.client.update_run, run_id, status="RUNNING")
            return run_id
        all_tags = {"mlflow.parentRunId": self.parent_run_id, tag_names.TRIAL_ID: key, tag_names.ROLE: "trial"}
        run = self.client.create_run(self.experiment_id, run_name=name, tags={**all_tags, **tags})
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if batch:
            _retry(self.client.log_batch, run_id, metrics=batch)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            _retry(self.client.log_batch, run_id, params=items[i : i + 100])

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, profile: dict[str, Any]) -> None:
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name, digest, "local" if source.startswith("/") else "code", source, profile=json.dumps(profile)
        )
        _retry(self.client.log_inputs, run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            _retry(self.client.set_tag, run_id, k, v)

    def log_table(self, run_id: str, rows: list[dict], artifact_file: str) -> None:
        if rows:
            keys = list(dict.fromkeys(k for r in rows for k in r))
            data = {k: [r.get(k) for r in rows] for k in keys}
            _retry(self.client.log_table, run_id, data=data, artifact_file=artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        _retry(self.client.log_text, run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        _retry(self.client.log_figure, run_id, figure, artifact_file)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        _retry(self.client.log_artifact, run_id, local_path, artifact_path)

    def finish(self, run_id: str, status: str) -> None:
        _retry(self.client.set_terminated, run_id, status)

    # --- reading ---------------------------------------------------------------------------------
    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def trial_runs(self, parent_run_id: str) -> list[tuple[str, str, str]]:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=10_000
        )
        return [(r.info.run_id, r.data.tags.get(tag_names.TRIAL_ID, ""), r.info.status) for r in runs]

    def latest_study_run(self, study: str) -> tuple[str, dict[str, str]] | None:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            return None
        runs = self.client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{tag_names.ROLE}` = 'study' and tags.`{tag_names.STUDY}` = '{study}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return (runs[0].info.run_id, dict(runs[0].data.tags)) if runs else None

    def download(self, run_id: str, artifact_path: str, dest: str) -> str:
        return self.client.download_artifacts(run_id, artifact_path, dest)

    def study_runs(self, study: str) -> list[dict[str, Any]]:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            return []
        runs = self.client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{tag_names.ROLE}` = 'study' and tags.`{tag_names.STUDY}` = '{study}'",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
        )
        return [_study_run_dict(r, self.experiment) for r in runs]

    def trial_details(self, parent_run_id: str) -> list[dict[str, Any]]:
        exp_ids = [self.client.get_run(parent_run_id).info.experiment_id]
        runs = self.client.search_runs(
            exp_ids, filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=10_000
        )
        return [
            {
                "run_id": r.info.run_id,
                "name": r.info.run_name,
                "status": r.info.status,
                "start_ms": r.info.start_time,
                "end_ms": r.info.end_time,
                "tags": dict(r.data.tags),
                "params": dict(r.data.params),
                "metrics": dict(r.data.metrics),
            }
            for r in runs
        ]

    def all_study_runs(self) -> list[dict[str, Any]]:
        from mlflow.entities import ViewType

        names = {e.experiment_id: e.name for e in self.client.search_experiments(view_type=ViewType.ALL)}
        if not names:
            return []
        runs = self.client.search_runs(
            list(names),
            filter_string=f"tags.`{tag_names.ROLE}` = 'study'",
            order_by=["attributes.start_time DESC"],
            max_results=10_000,
        )
        return [_study_run_dict(r, names.get(r.info.experiment_id, "?")) for r in runs]

    def study_run(self, run_id: str) -> dict[str, Any] | None:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return None
        if run.data.tags.get(tag_names.ROLE) != "study":
            return None
        exp = self.client.get_experiment(run.info.experiment_id)
        return _study_run_dict(run, exp.name if exp else "?")

    def last_step(self, run_id: str, metric: str) -> int | None:
        history = self.client.get_metric_history(run_id, metric)
        return max((m.step for m in history), default=None)

    def load_table(self, run_id: str, artifact_file: str) -> list[dict[str, Any]]:
        import json
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = Path(self.client.download_artifacts(run_id, artifact_file, tmp))
            except Exception:  # MLflow raises its own and OSError for an absent artifact
                return []
            if path.stat().st_size > TABLE_LIMIT:
                raise TrackingError(f"{artifact_file} of run {run_id} is over {TABLE_LIMIT} bytes")
            try:
                table = json.loads(path.read_text())
                return [dict(zip(table["columns"], row)) for row in table["data"]]
            except (ValueError, KeyError, TypeError, RecursionError) as err:
                raise TrackingError(f"{artifact_file} of run {run_id} is not a logged table: {err}") from None

    def load_text(self, run_id: str, artifact_file: str) -> str | None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = Path(self.client.download_artifacts(run_id, artifact_file, tmp))
            except Exception:  # MLflow raises its own and OSError for an absent artifact
                return None
            if path.stat().st_size > TABLE_LIMIT:
                raise TrackingError(f"{artifact_file} of run {run_id} is over {TABLE_LIMIT} bytes")
            try:
                return path.read_text()
            except UnicodeDecodeError:
                raise TrackingError(f"{artifact_file} of run {run_id} is not text") from None

    # --- the model registry (deploy) -------------------------------------------------------------
    def start_run(self, name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def register_export(
        self,
        run_id: str,
        folder: str,
        name: str,
        *,
        artifact_path: str,
        tags: dict[str, str],
        alias: str | None = None,
        description: str = "",
    ) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        _retry(self.client.log_artifacts, run_id, folder, artifact_path)
        source = f"{self.client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
        try:
            self.client.get_registered_model(name)
        except MlflowException:  # not registered yet
            self.client.create_registered_model(name, description="ParaDiS switches exported for deployment")
        version = self.client.create_model_version(
            name, source, run_id=run_id, tags={**tags, tag_names.ARTIFACT_PATH: artifact_path}, description=description
        )
        if alias:
            self.client.set_registered_model_alias(name, alias, version.version)
        return {"name": name, "version": str(version.version), "run_id": run_id, "source": source}

    def resolve_model_uri(self, uri: str, dest: str) -> tuple[str, dict[str, str]]:
        rest = uri[len("models:/") :] if uri.startswith("models:/") else ""
        name, sep, alias = rest.partition("@")
        if sep:
            version = self.client.get_model_version_by_alias(name, alias)
        else:
            name, _, number = rest.rpartition("/")
            if not name or not number.isdigit():
                raise TrackingError(f"{uri!r} is not models:/NAME/VERSION or models:/NAME@ALIAS")
            version = self.client.get_model_version(name, number)
        tags = dict(version.tags or {})
        path = tags.get(tag_names.ARTIFACT_PATH)
        if path and (path.startswith(("/", "\\")) or ".." in Path(path).parts or ":" in path):
            raise TrackingError(
                f"tag {tag_names.ARTIFACT_PATH} {path[:100]!r} leaves its run's artifacts; refused, nothing downloaded"
            )
        if version.run_id and path:
            local = self.client.download_artifacts(version.run_id, path, dest)
        else:
            from mlflow.artifacts import download_artifacts

            local = download_artifacts(artifact_uri=version.source, dst_path=dest, tracking_uri=self.uri)
        info = {"name": name, "version": str(version.version), "run_id": version.run_id or "", "source": version.source}
        return local, {**tags, **info}

"""The tracking interface: what the study runner, the Tune callback and deploy may ask of a tracking
backend. :class:`orchestration.tracking.mlflow.MlflowTracker` implements it; another backend is one
class with these methods (and its construction in :func:`orchestration.tracking.open_tracker`)."""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from orchestration.spec import paradis_home
from paradis.engine.metrics import is_tracked


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used."""


class Tracker(Protocol):
    """A study is a parent run; each trial a child run of it. Every call may be retried by the
    implementation; none may stop training (the callers catch and report)."""

    def start_study(self, name: str, tags: dict[str, str], texts: dict[str, str]) -> str:
        """Open the study's run with its tags and text artifacts (path -> text); its id."""

    def resume_study(self, run_id: str) -> None: ...

    def start_trial(self, key: str, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """The child run of trial ``key``, created once (a resumed study finds it again)."""

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_params(self, run_id: str, params: dict[str, Any]) -> None: ...

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, profile: dict[str, Any]) -> None:
        """The data a run trained on (the runs table's data set column)."""

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None: ...

    def log_table(self, run_id: str, rows: list[dict], artifact_file: str) -> None: ...

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None: ...

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None: ...

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None: ...

    def finish(self, run_id: str, status: str) -> None:
        """End a run: ``FINISHED`` or ``FAILED``."""

    def run_metrics(self, run_id: str) -> dict[str, float]: ...

    def latest_study_run(self, study: str) -> tuple[str, dict[str, str]] | None:
        """The newest parent run of study ``study`` (its id and tags), or ``None``."""

    def trial_runs(self, parent_run_id: str) -> list[tuple[str, str, str]]:
        """``(run id, trial id, status)`` of every child run of a study's run."""

    def download(self, run_id: str, artifact_path: str, dest: str) -> str: ...

    def study_runs(self, study: str) -> list[dict[str, Any]]:
        """Every parent run of study ``study``, newest first: ``run_id``, ``status``, ``start_ms``,
        ``end_ms`` (``None`` while running) and ``tags``."""

    def trial_details(self, parent_run_id: str) -> list[dict[str, Any]]:
        """Every child run of a study's run: ``run_id``, ``name``, ``status``, ``start_ms``, ``end_ms``,
        ``tags``, ``params`` (as logged: strings) and ``metrics`` (the last value of each)."""

    def all_study_runs(self) -> list[dict[str, Any]]:
        """Every study run of the store, in every experiment, newest first: as :meth:`study_runs`, with
        ``experiment`` (its name)."""

    def study_run(self, run_id: str) -> dict[str, Any] | None:
        """One study run as :meth:`all_study_runs` gives it; ``None`` where the store has no study run of
        that id."""

    def last_step(self, run_id: str, metric: str) -> int | None:
        """The step (a trial's epoch) of the last value of ``metric`` logged to a run."""

    def load_table(self, run_id: str, artifact_file: str) -> list[dict[str, Any]]:
        """The rows of a table that :meth:`log_table` logged (``[]`` where the run has none)."""

    def load_text(self, run_id: str, artifact_file: str) -> str | None:
        """A text artifact of a run (``None`` where it has none), refused over the size limit."""

    # --- the model registry (deploy) -------------------------------------------------------------
    def start_run(self, name: str, tags: dict[str, str]) -> str:
        """A new top-level run in the tracker's experiment (e.g. the run of a registered export); its id."""

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
        """Log export folder ``folder`` to run ``run_id`` under ``artifact_path`` and register those
        files as a new version of model ``name`` (created when new) with ``tags``, and point ``alias``
        at it. No model flavour is logged (nothing pickled): the version's artifacts are the export's
        own files. Returns ``{"name", "version", "run_id", "source"}``."""

    def resolve_model_uri(self, uri: str, dest: str) -> tuple[str, dict[str, str]]:
        """Download the artifacts of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` into ``dest``:
        the local folder, and the version's tags with ``name``, ``version``, ``run_id`` and ``source``."""


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri`` (the spec's), else ``MLFLOW_TRACKING_URI``, else an sqlite file at an absolute path.

    A relative sqlite path is refused: under ``ray job submit`` it would resolve inside the job's
    temporary copy of the working directory; an in-memory store keeps nothing."""
    given = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not given:
        return f"sqlite:///{paradis_home() / 'mlflow.db'}"
    where = "tracking.uri" if uri else "MLFLOW_TRACKING_URI"
    if given.startswith("sqlite:") and given in ("sqlite:", "sqlite://", "sqlite:///", "sqlite:///:memory:"):
        raise TrackingError(f"{where} {given!r} is an in-memory store: nothing would be kept; give a file")
    if given.startswith("sqlite:///") and not given.startswith("sqlite:////"):
        raise TrackingError(
            f"{where} {given!r} is a relative path: it would follow the working directory (under ray job "
            f"submit, a temporary copy); give an absolute one, sqlite:////absolute/path/mlflow.db"
        )
    if given.startswith("sqlite:") and not given.startswith("sqlite:////"):
        raise TrackingError(f"{where} {given!r}: an sqlite store is sqlite:////absolute/path/mlflow.db")
    return given


def data_of(cfg) -> tuple[str, str, str, dict[str, Any]]:
    """``(name, digest, source, profile)`` of a run configuration's data: the digest covers what
    selects its images (data set, folder, subsets, hold-out, seed), so equal digests are equal images."""
    import hashlib

    d = cfg.data
    profile = {
        "dataset": d.name,
        "root": d.root,
        "train_subset": d.train_subset,
        "test_subset": d.test_subset,
        "holdout": d.holdout,
        "seed": cfg.training.seed,
    }
    digest = hashlib.sha256(json.dumps(profile, sort_keys=True).encode()).hexdigest()[:16]
    return d.name, digest, d.root or f"paradis:{d.name}", profile


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
    """The numeric metrics of a trial's report that a tracking store keeps."""
    out = {}
    for k, v in result.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if is_tracked(k) or k == "hypervolume":
            out[k] = float(v)
    return out

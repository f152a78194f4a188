"""Tracking: the interface (:mod:`~orchestration.tracking.base`), its MLflow implementation
(:mod:`~orchestration.tracking.mlflow`) and the Ray Tune callback that uses only the interface
(:mod:`~orchestration.tracking.callback`)."""

from orchestration.tracking.base import (
    Tracker,
    TrackingError,
    flatten,
    resolve_tracking_uri,
    trial_metrics,
)
from orchestration.tracking.mlflow import MlflowTracker, check_tracking, git_commit, make_client


def open_tracker(uri: str, experiment: str, parent_run_id: str | None = None) -> Tracker:
    """The tracker of store ``uri`` (every URI MLflow reads: sqlite, a tracking server)."""
    return MlflowTracker(uri, experiment, parent_run_id)


__all__ = [
    "MlflowTracker",
    "Tracker",
    "TrackingError",
    "check_tracking",
    "flatten",
    "git_commit",
    "make_client",
    "open_tracker",
    "resolve_tracking_uri",
    "trial_metrics",
]

import time

import pytest

from orchestration.spec import StudySpec
from orchestration.tracking import TrackingError, check_tracking, resolve_tracking_uri, trial_metrics


def test_default_store_is_an_absolute_sqlite_file(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PARADIS_HOME", str(tmp_path / "home"))
    named = {"model": {"name": "resnet_small"}, "data": {"name": "synthetic"}}
    spec = StudySpec(name="s", **named)
    assert resolve_tracking_uri(spec.tracking.uri) == f"sqlite:///{tmp_path}/home/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(spec.tracking.uri) == "http://127.0.0.1:5000"
    monkeypatch.chdir(tmp_path)
    spec = StudySpec(name="s", tracking={"uri": "sqlite:///rel/m.db"}, **named)
    with pytest.raises(TrackingError, match="is a relative path"):  # it would follow the working directory
        resolve_tracking_uri(spec.tracking.uri)
    spec = StudySpec(name="s", tracking={"uri": f"sqlite:///{tmp_path}/m.db"}, **named)
    assert resolve_tracking_uri(spec.tracking.uri) == f"sqlite:///{tmp_path}/m.db"


def test_unreachable_server_is_a_clear_error_at_once():
    start = time.perf_counter()
    with pytest.raises(TrackingError, match=r"MLflow tracking store http://127.0.0.1:9 is not reachable"):
        check_tracking("http://127.0.0.1:9")
    assert time.perf_counter() - start < 30


def test_only_numeric_training_metrics_go_to_mlflow():
    got = trial_metrics(
        {
            "acc/1.0": 0.9,
            "loss": 1.0,
            "table": "[]",
            "time_this_iter_s": 3.0,
            "done": True,
            "device_macs/target": 1000,
            "lr": 0.1,
        }
    )
    assert got == {"acc/1.0": 0.9, "loss": 1.0, "device_macs/target": 1000.0, "lr": 0.1}

"""The tracking callback's work, without Ray: one MLflow run per trial, metrics per report, the switch
table and checkpoint at the end, FAILED with the reason when a trial fails."""

import json
from types import SimpleNamespace

import pytest
import torch

from orchestration.tracking import open_tracker
from orchestration.tracking.callback import FAILED_KEY, TrialRuns
from paradis.config import RunConfig

TABLE = [
    {
        "switch": "[1.0]",
        "trained": True,
        "top1": 0.875,
        "top5": 0.99,
        "macs": 1000,
        "max_device_macs": 1000,
        "params": 10,
        "devices": 1,
    }
]


def _trial(trial_id, last_result=None, checkpoint=None, error_msg=None):
    return SimpleNamespace(
        trial_id=trial_id,
        config={"variant": "ipkd", "repeat": 0},
        last_result=last_result,
        checkpoint=checkpoint,
        num_failures=1,
        error_file=None,
        error_msg=error_msg,
    )


def test_a_trial_becomes_one_run_with_its_metrics_table_and_checkpoint(tmp_path):
    tracker = open_tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "callback")
    tracker.start_study("study", {}, {})
    runs = TrialRuns(tracker, lambda config: RunConfig(), {"paradis.study": "study"})
    ckpt = _checkpoint(tmp_path / "ckpt")
    trial = _trial("t1")
    runs.run(trial)
    runs.log_result(trial, {"epoch": 1, "acc/1.0": 0.8, "table": json.dumps(TABLE)})
    runs.log_result(trial, {"epoch": 2, "acc/1.0": 0.875, "node_ip": "10.0.0.2"})
    trial.last_result = {"epoch": 2, "checkpoint_path": str(ckpt)}
    runs.complete(trial)
    assert runs.run(trial) == runs.runs["t1"]  # one run per trial, however often asked
    ((run_id, trial_id, status),) = tracker.trial_runs(tracker.parent_run_id)
    assert (trial_id, status) == ("t1", "FINISHED")
    assert tracker.run_metrics(run_id)["acc/1.0"] == 0.875
    assert tracker.load_table(run_id, "table/switches.json") == TABLE  # the newest table a report carried
    assert "| [1.0] |" in tracker.load_text(run_id, "table/switches.md")
    (detail,) = tracker.trial_details(tracker.parent_run_id)
    assert detail["tags"]["paradis.restarts"] == "1" and detail["tags"]["paradis.node_ip"] == "10.0.0.2"
    assert json.loads(detail["tags"]["paradis.search"]) == {"variant": "ipkd", "repeat": 0}
    # tracking.checkpoints final (the default): the trained model alone, no optimizer state
    model = torch.load(tracker.download(run_id, "checkpoint/model.pt", str(tmp_path / "dl")), weights_only=True)
    assert set(model) == {"model", "epoch", "history", "config"} and model["epoch"] == 2
    assert [a.path for a in tracker.client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/model.pt"]


def _checkpoint(folder):
    """A trainer's checkpoint of a small model after a step of SGD with momentum (its optimizer state
    as large as its weights)."""
    from paradis.engine.checkpoint import save_checkpoint
    from paradis.models import create_model

    model = create_model("mobilenet_v1_small", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 28, 28), "[1.0]").sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 2, "history": [{}]}
    save_checkpoint(folder / "checkpoint.pt", {**state, "config": {"model": {"name": "mobilenet_v1_small"}}})
    return folder


@pytest.mark.parametrize("kind", ["none", "final", "all"])
def test_what_of_a_checkpoint_reaches_the_store(tmp_path, kind):
    tracker = open_tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "callback")
    tracker.start_study("study", {}, {})
    runs = TrialRuns(tracker, lambda config: RunConfig(), {}, checkpoints=kind)
    ckpt = _checkpoint(tmp_path / "ckpt")
    trial = _trial("t1", last_result={"epoch": 2, "checkpoint_path": str(ckpt)})
    runs.complete(trial)
    logged = {a.path: a.file_size for a in tracker.client.list_artifacts(runs.runs["t1"], "checkpoint")}
    want = {"none": set(), "final": {"checkpoint/model.pt"}, "all": {"checkpoint/model.pt", "checkpoint/checkpoint.pt"}}
    assert set(logged) == want[kind]
    if kind == "all":  # the optimizer's momentum is as large as the weights: the model alone is about half
        assert logged["checkpoint/model.pt"] < 0.6 * logged["checkpoint/checkpoint.pt"]


def test_a_trial_of_several_seeds_logs_each_seeds_model(tmp_path):
    tracker = open_tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "callback")
    tracker.start_study("study", {}, {})
    runs = TrialRuns(tracker, lambda config: RunConfig(), {}, checkpoints="final")
    folder = tmp_path / "ckpt"
    for k in range(3):  # an Optuna trial with repeats: one checkpoint per seed (_train_seeds)
        _checkpoint(folder / f"seed{k}")
    (folder / "notes").mkdir()
    runs.complete(_trial("t1", last_result={"epoch": 2, "checkpoint_path": str(folder)}))
    logged = {a.path for k in range(3) for a in tracker.client.list_artifacts(runs.runs["t1"], f"checkpoint/seed{k}")}
    assert logged == {f"checkpoint/seed{k}/model.pt" for k in range(3)}
    # deploy --run-id names where a trial of several seeds keeps its models
    from orchestration.deploy.sources import load_from_mlflow
    from paradis.deploy import ExportError

    with pytest.raises(ExportError, match=r"checkpoint/seed<k>/model\.pt: download one"):
        load_from_mlflow(runs.runs["t1"], f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_failed_trial_is_a_failed_run_naming_why(tmp_path):
    tracker = open_tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "callback")
    tracker.start_study("study", {}, {})
    runs = TrialRuns(tracker, lambda config: RunConfig(), {})
    reported = _trial("t1", last_result={FAILED_KEY: "loss is NaN at epoch 2"})
    runs.log_result(reported, {"epoch": 2, FAILED_KEY: "loss is NaN at epoch 2", "acc/1.0": 0.1})
    runs.complete(reported)
    crashed = _trial("t2", error_msg="RuntimeError: out of memory")
    runs.error(crashed)
    details = {d["tags"]["paradis.trial_id"]: d for d in tracker.trial_details(tracker.parent_run_id)}
    assert details["t1"]["status"] == "FAILED" and details["t1"]["tags"]["paradis.error"] == "loss is NaN at epoch 2"
    assert "acc/1.0" not in tracker.run_metrics(runs.runs["t1"])  # a failing report logs no metrics
    assert (
        details["t2"]["status"] == "FAILED" and details["t2"]["tags"]["paradis.error"] == "RuntimeError: out of memory"
    )

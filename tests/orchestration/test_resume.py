"""--resume compares the spec with the one the study run trained with (spec/resolved.json)."""

import json

import pytest

from orchestration.preflight import load_study
from orchestration.resume import ChangedSpec, UnsafeResume, check_unchanged


class _Store:
    """The one read check_unchanged makes of a tracker."""

    def __init__(self, text):
        self.text = text

    def load_text(self, run_id, path):
        return self.text if path == "spec/resolved.json" else None


def _spec(*sets):
    return load_study("studies/quickstart.yaml", overrides=list(sets))


def _recorded(*sets):
    return _Store(json.dumps(_spec(*sets).model_dump(mode="json")))


@pytest.mark.parametrize(
    "change",
    [
        "resources.max_concurrent_trials=1",
        "resources.cpus_per_worker=2",
        "resources.share_free_cores=false",
        "failure.max_failures=5",
        "description=another",
        "evaluation.calibration_batches=20",
    ],
)
def test_what_only_changes_how_the_study_runs_or_reports_may_change(change):
    check_unchanged(_spec(change), _recorded(), "run1")


@pytest.mark.parametrize(
    "change, key",
    [
        ("resources.workers_per_trial=2", "resources.workers_per_trial: 1 -> 2"),
        ("data.train_subset=1000", "data.train_subset: 40000 -> 1000"),
        ("training.optimizer.lr=0.1", "training.optimizer.lr: 0.2 -> 0.1"),
        ("training.epochs=3", "training.epochs: 1 -> 3"),
    ],
)
def test_a_change_that_trains_otherwise_is_refused_naming_the_key(change, key):
    with pytest.raises(ChangedSpec, match="study run run1") as err:
        check_unchanged(_spec(change), _recorded(), "run1")
    assert key in str(err.value)


def test_a_run_without_a_resolved_spec_cannot_be_compared():
    with pytest.raises(UnsafeResume, match="records no resolved spec"):
        check_unchanged(_spec(), _Store(None), "run1")


def test_a_resumed_study_counts_the_budget_its_earlier_loops_used(tmp_path):
    from orchestration.resume import STATE_FILE, record_tuning_seconds, tuning_seconds
    from orchestration.study import budget_reached

    assert tuning_seconds(tmp_path) == 0.0  # no state file yet
    (tmp_path / STATE_FILE).write_text(json.dumps({"parent_run_id": "run1", "uri": "sqlite:///x.db"}))
    assert tuning_seconds(tmp_path) == 0.0
    record_tuning_seconds(tmp_path, 40.0)  # an interrupted first loop
    assert tuning_seconds(tmp_path) == 40.0
    assert json.loads((tmp_path / STATE_FILE).read_text())["parent_run_id"] == "run1"
    # Tune's budget of 60 s goes on from 40 s: a resumed loop of 25 s spent it, one of 15 s did not
    assert budget_reached(60.0, tuning_seconds(tmp_path), 25.0) and not budget_reached(60.0, 40.0, 15.0)
    assert not budget_reached(None, 40.0, 1e6)


@pytest.mark.parametrize("value", ["40", -1, True, None, [1], 1e12])
def test_a_crafted_tuning_time_counts_as_none(tmp_path, value):
    from orchestration.resume import STATE_FILE, tuning_seconds

    (tmp_path / STATE_FILE).write_text(json.dumps({"parent_run_id": "run1", "tuning_seconds": value}))
    assert tuning_seconds(tmp_path) == 0.0

"""What ended each trial of a study, as the study table and `paradis-study status` show it."""

from types import SimpleNamespace

import pytest

from orchestration.endings import interrupted, records_from
from orchestration.preflight import load_study


def _result(variant, epoch, error=None, failed=None):
    metrics = {"epoch": epoch, "trial_id": f"t-{variant}", "time_total_s": 10.0 * epoch}
    if failed:
        metrics["failed_reason"] = failed
    return SimpleNamespace(metrics=metrics, config={"variant": variant}, error=error, path=None, metrics_dataframe=None)


def _spec(scheduler="none"):
    return load_study("studies/quickstart.yaml", overrides=["training.epochs=4", f"scheduler.kind={scheduler}"])


def _ended(records):
    return {r.params["variant"]: (r.status, r.ended, r.epochs, r.planned) for r in records}


def test_asha_stopped_trials_read_asha_and_finished_ones_finished():
    spec = _spec("asha")
    results = [_result("ipkd", 4), _result("wide-ipkd", 1), _result("wide-ipkd-a", 2)]
    assert not interrupted(results, spec)
    assert _ended(records_from(results, spec)) == {
        "ipkd": ("TERMINATED", "finished", 4, 4),
        "wide-ipkd": ("TERMINATED", "ASHA", 1, 4),
        "wide-ipkd-a": ("TERMINATED", "ASHA", 2, 4),
    }


def test_a_study_stopped_short_without_a_scheduler_is_interrupted():
    spec = _spec()
    results = [_result("ipkd", 4), _result("wide-ipkd", 2), _result("wide-ipkd-a", 4)]
    assert interrupted(results, spec)
    assert _ended(records_from(results, spec))["wide-ipkd"] == ("INTERRUPTED", "interrupted", 2, 4)
    assert interrupted(results[:2], _spec("asha")), "a trial Tune never created: interrupted, whatever the scheduler"


def test_an_interrupted_asha_study_tells_asha_stops_from_the_trials_stopped_with_it():
    """Tune marks both terminated; only the trials ASHA stopped were completed (their runs closed)."""
    spec = _spec("asha")
    results = [_result("ipkd", 4), _result("wide-ipkd", 1), _result("wide-ipkd-a", 2)]
    completed = {"t-ipkd", "t-wide-ipkd"}  # wide-ipkd-a was still training at Ctrl+C
    assert interrupted(results, spec, completed=completed)
    assert _ended(records_from(results, spec, completed=completed)) == {
        "ipkd": ("TERMINATED", "finished", 4, 4),
        "wide-ipkd": ("TERMINATED", "ASHA", 1, 4),
        "wide-ipkd-a": ("INTERRUPTED", "interrupted", 2, 4),
    }
    # every short trial completed: ASHA's decisions, not an interrupted study
    assert not interrupted(results, spec, completed={"t-ipkd", "t-wide-ipkd", "t-wide-ipkd-a"})
    # a trial Tune never created: interrupted, yet the trials ASHA stopped still read ASHA
    records = _ended(records_from(results[:2], spec, completed={"t-ipkd", "t-wide-ipkd"}))
    assert interrupted(results[:2], spec, completed=set()) and records["wide-ipkd"][1] == "ASHA"


def test_a_failed_trial_does_not_make_the_study_interrupted():
    spec = _spec()
    results = [_result("ipkd", 1, failed="diverged"), _result("wide-ipkd", 4), _result("wide-ipkd-a", 4)]
    assert not interrupted(results, spec)


@pytest.mark.parametrize("epoch, ended", [(2, "budget"), (0, "not started")])
def test_the_time_budget_says_which_trials_it_stopped(epoch, ended):
    spec = _spec()
    results = [_result("ipkd", 4), _result("wide-ipkd", epoch), _result("wide-ipkd-a", 4)]
    assert not interrupted(results, spec, budget_hit=True)
    assert _ended(records_from(results, spec, budget_hit=True))["wide-ipkd"] == ("STOPPED", ended, epoch, 4)


def test_a_failed_trial_reads_failure():
    spec = _spec()
    results = [_result("ipkd", 1, error=RuntimeError("boom")), _result("wide-ipkd", 4), _result("wide-ipkd-a", 4)]
    records = {r.params["variant"]: r for r in records_from(results, spec)}
    assert (records["ipkd"].status, records["ipkd"].ended, records["ipkd"].error) == ("ERROR", "failure", "boom")

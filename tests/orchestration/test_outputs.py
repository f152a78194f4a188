"""The study's reports as entries: which apply to which study, what each logs, and the one writer that
logs them on a real MLflow store."""

from dataclasses import replace

from orchestration.preflight import load_study
from orchestration.report.outputs import STUDY_REPORTS, learning_curves, report_study, seeds, study_table
from orchestration.tracking import open_tracker
from tests.orchestration.conftest import ROOT
from tests.orchestration.test_report import RECORDS

CURVE = [{"epoch": e, "loss/1.2": 1.0 / e, "acc/1.2": 0.8 + 0.01 * e} for e in range(1, 9)]


def _repeated():
    """RECORDS trained twice (repeats 0 and 1), the second 1 point better on every switch."""
    out = []
    for repeat in (0, 1):
        for r in RECORDS:
            rows = [{**row, "top1": row["top1"] + 0.01 * repeat} for row in r.rows]
            out.append(replace(r, trial_id=f"{r.trial_id}{repeat}", params={**r.params, "repeat": repeat}, rows=rows))
    return out


def test_each_report_applies_where_it_should():
    quick = load_study(ROOT / "studies" / "quickstart.yaml")
    assert {r.__name__ for r in STUDY_REPORTS} == {"study_table", "learning_curves", "fronts", "search_front", "seeds"}
    applied = [r.__name__ for r in STUDY_REPORTS if r(quick, RECORDS, "t") is not None]
    assert applied == ["study_table"]  # no curves, no front, one objective, one seed
    with_curves = [replace(RECORDS[0], curves=CURVE), RECORDS[1]]
    assert learning_curves(quick, with_curves, "t").metrics["teacher_late_gain"] > 0
    table = study_table(quick, RECORDS, "t")
    assert table.metrics == {"trials_finished": 2, "trials_failed": 0}
    assert set(table.texts) == {"study/table.md", "study/table.csv"} and "study/accuracy_vs_macs.png" in table.figures
    repeated = load_study(ROOT / "studies" / "quickstart.yaml", overrides=["repeats=2"])
    out = seeds(repeated, _repeated(), "t")
    assert "study/summary.md" in out.texts and "(2 seeds)" in out.texts["study/summary.md"]


def test_report_study_logs_every_output_on_the_study_run(tmp_path, capsys):
    tracker = open_tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "outputs")
    run_id = tracker.start_study("study", {}, {})
    spec = load_study(ROOT / "studies" / "quickstart.yaml", overrides=["repeats=2"])
    records = [replace(r, curves=CURVE) for r in _repeated()]
    report_study(tracker, run_id, spec, records, "quickstart")
    metrics = tracker.run_metrics(run_id)
    assert metrics["trials_finished"] == 4 and "teacher_late_gain" in metrics
    assert "| paradis_a |" in tracker.load_text(run_id, "study/table.md")
    assert tracker.load_text(run_id, "study/summary.md") and tracker.load_table(run_id, "study/learning_curves.json")
    printed = capsys.readouterr().out
    assert "(2 seeds)" in printed

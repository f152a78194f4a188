"""Extra seeds where they decide: the plan from the pilot's spread and a time budget, the commands it
runs (new repeat indices only), and the study-results files the report can be rebuilt from."""

import json

import pytest

from orchestration.report.claims import CLAIMS
from orchestration.report.cli import main
from orchestration.report.decide import parse_budget, plan
from orchestration.report.exported import read_exports
from orchestration.report.results import results_markdown
from orchestration.report.studies import load_results
from orchestration.report.verdicts import claim_verdict
from tests.orchestration.test_results import ROOT, _baselines, _log_study, _study


def _noisy(noise=(0.0, 0.4, -0.3)):
    """Baselines whose ParaDiS switches vary by seed (points): C2's checks (bound -1) sit 0.5 below
    US with spread, so three seeds leave them inconclusive; individual models and US are exact."""
    records = _baselines().records
    for r in records:
        if r.params["variant"] == "paradis-wide-ipkd":
            k = r.params["repeat"]
            r.rows = [{**row, "top1": row["top1"] + noise[k] / 100} for row in r.rows]
    return records


def test_the_plan_adds_the_seeds_that_decide_within_the_budget():
    results = {"baselines": _study("baselines", _noisy())}  # wall 60 s for 3 seeds: 20 s per seed
    c2 = CLAIMS["C2"].checks(results)
    assert claim_verdict(c2) == "inconclusive"
    need = c2[0].seeds_to_decide()
    assert need and need > 3
    p = plan(results, budget_s=3600)
    assert p.extra == {"baselines": need - 3} and p.first_repeat == {"baselines": 3}
    assert p.cost_s == pytest.approx(20.0 * (need - 3))
    assert {u.check.what for u in p.decided} >= {c.what for c in c2}
    tight = plan(results, budget_s=20.0 * (need - 3) - 1)  # one second short: nothing is run
    assert tight.extra == {} and tight.cost_s == 0 and len(tight.left) >= 3


def test_budgets_read_as_durations_and_nonsense_is_refused():
    assert parse_budget("2h") == 7200 and parse_budget("90m") == 5400 and parse_budget("45") == 45
    for bad in ("soon", "-1h", "0", "99999h"):
        with pytest.raises(ValueError, match="--budget"):
            parse_budget(bad)


def test_decide_dry_run_prints_the_new_runs_of_the_same_configuration(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _log_study(uri, "baselines", _noisy(), overrides=["repeats=3"])
    out = tmp_path / "R.md"
    code = main(
        ["decide", "--tracking-uri", uri, "--budget", "2h", "--dry-run", "--study", "baselines", "--output", str(out)]
    )
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert "would run: orchestration/run_study.py studies/baselines.yaml --set repeats=" in text
    assert "--set repeat_from=3" in text
    assert main(["decide", "--tracking-uri", uri, "--budget", "soon", "--study", "baselines"]) == 2
    assert capsys.readouterr().err.startswith("report: error: --budget 'soon'")


def test_the_report_is_rebuilt_from_the_exported_files_alone(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _log_study(uri, "baselines", _baselines().records, overrides=["repeats=3"])
    folder = tmp_path / "results"
    folder.mkdir()
    assert main(["export", "--tracking-uri", uri, "--output", str(folder), "--study", "baselines"]) == 0
    data = json.loads((folder / "baselines.json").read_text())
    assert data["format"] == "paradis-study-results/1" and len(data["trials"]) == 9
    trial = next(t for t in data["trials"] if t["params"]["variant"] == "us-wide-ipkd" and t["params"]["repeat"] == 2)
    base = load_results(uri, ROOT / "studies", ["baselines"])["baselines"].spec.training.seed
    assert trial["seed"] == base + 2 and trial["status"] == "TERMINATED" and trial["rows"]

    from_store = load_results(uri, ROOT / "studies", ["baselines"])
    from_files = read_exports(folder)
    assert (
        results_markdown(from_files, "cmd").split("## The studies")[0]
        == (results_markdown(from_store, "cmd").split("## The studies")[0])
    )
    out = tmp_path / "R.md"
    assert main(["results", "--from", str(folder), "--output", str(out)]) == 0
    assert "## C1: reproduced" in out.read_text() and "results --from" in out.read_text()

    # another machine's file of the same study with another configuration is refused, naming the key
    other = json.loads((folder / "baselines.json").read_text())
    other["configuration"]["training"]["epochs"] = 99
    (folder / "baselines-b.json").write_text(json.dumps(other))
    assert main(["results", "--from", str(folder), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "another configuration of study 'baselines'" in err and "(training)" in err
    # values the report reads are checked: an accuracy of 5000 % is one line naming the file
    other = json.loads((folder / "baselines.json").read_text())
    other["trials"][0]["rows"][0]["top1"] = 50.0
    (folder / "baselines-b.json").write_text(json.dumps(other))
    assert main(["results", "--from", str(folder), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("report: error: ") and "baselines-b.json: not a study-results file" in err
    assert err.count("\n") == 1

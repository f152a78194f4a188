"""The reproduction report: a check's verdict from its paired 95 % interval, each claim's comparisons,
and the command that reads the studies' runs from an MLflow store and writes the report."""

import json
import math
from pathlib import Path

import pytest

from orchestration.preflight import load_study
from orchestration.report.claims import CLAIMS, closest_in_macs
from orchestration.report.cli import main
from orchestration.report.results import results_markdown
from orchestration.report.seeds import groups
from orchestration.report.studies import StudyResult, load_results
from orchestration.report.study import TrialRecord
from orchestration.report.verdicts import Check, claim_verdict

ROOT = Path(__file__).resolve().parents[2]


def _row(switch, top1, macs, trained=True, matches=None, device_macs=None):
    return {
        "switch": switch,
        "trained": trained,
        "top1": top1,
        "top5": None,
        "macs": macs,
        "max_device_macs": device_macs or macs,
        "params": 1,
        "devices": 1,
        "matches": matches,
    }


def _check(diffs_points, op=">=", bound=0.0):
    a = {k: 0.5 + d / 100 for k, d in enumerate(diffs_points)}
    b = dict.fromkeys(a, 0.5)
    return Check("a - b", "[1.0]", a, b, op, bound)


def test_a_check_is_decided_by_where_its_interval_lies():
    # differences 1, 2, 3 points: mean 2, 95 % interval 2 -+ 4.303 * 1 / sqrt(3) = [-0.484, 4.484]
    c = _check([1.0, 2.0, 3.0])
    mean, lo, hi = c.interval()
    half = 4.302653 / math.sqrt(3)
    assert mean == pytest.approx(2.0) and (lo, hi) == pytest.approx((2 - half, 2 + half), abs=1e-5)
    assert c.verdict() == "inconclusive"  # the interval holds 0
    assert _check([1.0, 2.0, 3.0], bound=-1.0).verdict() == "reproduced"  # all of it above -1
    assert _check([1.0, 2.0, 3.0], bound=5.0).verdict() == "not reproduced"  # all of it below 5
    assert _check([-5.0, -5.5, -4.5], "<=", -4.0).verdict() == "inconclusive"  # [-6.24, -3.76]
    assert _check([-5.0, -5.2, -4.8], "<=", -4.0).verdict() == "reproduced"  # [-5.50, -4.50]
    assert _check([-1.0, -1.2, -0.8], "<=", -4.0).verdict() == "not reproduced"
    assert _check([2.0]).verdict() == "inconclusive"  # one seed: no interval


def test_seeds_to_decide_is_where_the_t_interval_would_exclude_the_bound():
    # mean 2, sd 1: half-width t(0.975, n-1) / sqrt(n) is 2.48 at n = 3, 1.59 at n = 4
    assert _check([1.0, 2.0, 3.0]).seeds_to_decide() == 4
    assert _check([1.0, 2.0, 3.0], bound=-1.0).seeds_to_decide() == 3  # decided already by the 3 it has
    # below the bound: refuting it must pass Holm's strictest level over the claim's checks (2.5 % / 4)
    below = _check([-2.0, -2.5, -1.5], bound=-1.0)
    assert below.seeds_to_decide(checks=1) == 4 and below.seeds_to_decide(checks=4) == 5
    assert _check([2.0]).seeds_to_decide() is None  # no spread to go by
    assert _check([-1.0, 1.0, 0.01]).seeds_to_decide() is None  # over 1000 seeds


def test_checks_pair_by_seed_and_claims_need_every_check():
    c = Check("a - b", "[1.0]", {0: 0.9, 1: 0.8, 2: 0.7}, {1: 0.75, 2: 0.69}, ">=", 0.0)
    assert c.diffs == pytest.approx([5.0, 1.0])  # repeat 0 has no partner
    yes, no, unsure = _check([1.0, 1.1, 0.9]), _check([-1.0, -1.1, -0.9]), _check([1.0, 2.0, 3.0])
    assert claim_verdict([yes, yes]) == "reproduced"
    assert claim_verdict([yes, unsure]) == "inconclusive"
    assert claim_verdict([yes, unsure, no]) == "not reproduced"
    assert claim_verdict([]) == "inconclusive"


def _study(key, records):
    return StudyResult(key, load_study(ROOT / "studies" / f"{key}.yaml"), run_id="r", wall_s=60.0, records=records)


def _baselines(paradis_acc=0.85, individual_acc=0.84, us_acc=0.855):
    records = []
    for k in range(3):
        d = 0.001 * k  # seed to seed spread, the same for every configuration: a paired difference is exact
        records.append(
            TrialRecord(
                f"p{k}",
                f"paradis-wide-ipkd-seed{k}",
                "ParaDiS Wide IPKD",
                {"variant": "paradis-wide-ipkd", "repeat": k},
                [
                    _row("[1.0]", paradis_acc + d, 1000),
                    _row("[0.5, 0.5]", paradis_acc - 0.02 + d, 500, device_macs=250),
                    _row("[0.5, 0.25, 0.25]", paradis_acc - 0.03 + d, 400, trained=False, device_macs=250),
                    _row("[4x0.25]", paradis_acc - 0.04 + d, 300, device_macs=75),
                ],
            )
        )
        records.append(
            TrialRecord(
                f"i{k}",
                f"individual-0.5-0.5-seed{k}",
                "Individual",
                {"variant": "individual-0.5-0.5", "repeat": k},
                [_row("[0.5, 0.5]", individual_acc - 0.02 + d, 500)],
            )
        )
        us_rows = [
            _row("[1.0]", us_acc + d, 1000),
            _row("[0.5]", us_acc - 0.08 + d, 260),
            _row("[0.25]", us_acc - 0.2 + d, 70),
            _row("[0.7]", us_acc - 0.02 + d, 500, matches="[0.5, 0.5]"),
            _row("[0.625]", us_acc - 0.03 + d, 400, matches="[0.5, 0.25, 0.25]"),
            _row("[0.55]", us_acc - 0.04 + d, 300, matches="[4x0.25]"),
        ]
        records.append(
            TrialRecord(f"u{k}", f"us-seed{k}", "US Wide IPKD", {"variant": "us-wide-ipkd", "repeat": k}, us_rows)
        )
    return _study("baselines", records)


def test_c1_compares_each_individual_model_with_the_paradis_switch_of_its_structure():
    checks = CLAIMS["C1"].checks({"baselines": _baselines()})
    assert [(c.what, c.switch) for c in checks] == [("ParaDiS Wide IPKD - individual-0.5-0.5", "[0.5, 0.5]")]
    assert checks[0].diffs == pytest.approx([1.0, 1.0, 1.0]) and checks[0].verdict() == "reproduced"
    worse = CLAIMS["C1"].checks({"baselines": _baselines(individual_acc=0.87)})
    assert claim_verdict(worse) == "not reproduced"


def test_c2_uses_the_us_width_matched_in_total_macs_and_c5_the_one_matched_per_device():
    results = {"baselines": _baselines()}
    c2 = CLAIMS["C2"].checks(results)
    assert [c.switch for c in c2] == ["[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]"]
    assert all(c.diffs == pytest.approx([-0.5] * 3) for c in c2)  # within the 1 point allowed
    assert claim_verdict(c2) == "reproduced"
    c5 = CLAIMS["C5"].checks(results)
    # per device [0.5, 0.5] and [0.5, 0.25, 0.25] run 250 MACs ([0.5]: 260), [4x0.25] 75 ([0.25]: 70)
    assert [c.what.split(" - ")[1] for c in c5] == [
        "US [0.5] (0.00 MMACs)",
        "US [0.5] (0.00 MMACs)",
        "US [0.25] (0.00 MMACs)",
    ]
    assert c5[2].diffs == pytest.approx([15.5] * 3) and claim_verdict(c5) == "reproduced"


def test_closest_in_macs_counts_the_widths_evaluated_for_a_match():
    us = next(g for g in groups(_baselines().records) if g.name == "us-wide-ipkd")
    assert closest_in_macs(us, 480) == ("[0.7]", 500)  # evaluated because it matches [0.5, 0.5] in cost
    assert closest_in_macs(us, 990) == ("[1.0]", 1000)


def _for_free(five_drop_points):
    records = []
    for k in range(3):
        d = 0.001 * k
        four = [_row("[1.0]", 0.86 + d, 1000), _row("[0.5, 0.5]", 0.85 + d, 500), _row("[4x0.25]", 0.83 + d, 300)]
        five = [{**r, "top1": r["top1"] - five_drop_points / 100 - 0.001 * (k == 1)} for r in four]
        five += [_row("[8x0.125]", 0.80, 150), _row("[0.5, 0.25, 0.25]", 0.80, 400, trained=False)]
        records.append(TrialRecord(f"a{k}", f"four-{k}", "P", {"training.switches": "four", "repeat": k}, four))
        records.append(TrialRecord(f"b{k}", f"five-{k}", "P", {"training.switches": "five", "repeat": k}, five))
    return {"for_free": _study("for_free", records)}


def test_c6_compares_each_switch_trained_with_four_and_with_five_switches():
    checks = CLAIMS["C6"].checks(_for_free(0.3))
    assert [c.what for c in checks] == [f"five switches - four: {s}" for s in ("[1.0]", "[0.5, 0.5]", "[4x0.25]")]
    assert checks[0].diffs == pytest.approx([-0.3, -0.4, -0.3])  # paired by repeat
    assert claim_verdict(checks) == "reproduced"  # less than 1 point lower, as Appendix F.1 says
    assert claim_verdict(CLAIMS["C6"].checks(_for_free(3.0))) == "not reproduced"


def _ablation(activation_gain_points):
    """Table 1's order with 1.5 points between rungs; Wide IPKD-A beta 0.1 and 1 above Wide IPKD by
    ``activation_gain_points``, with a seed-to-seed spread of 0.1 point in that gain."""
    base = {"paradis-no-kd": 0.82, "paradis-ipkd": 0.835, "paradis-wide-ipkd": 0.85}
    records = []
    for k in range(3):
        d, jitter = 0.001 * k, 0.001 * (k - 1)
        accs = {
            **base,
            **{f"paradis-wide-ipkd-a-{b}": 0.85 + activation_gain_points / 100 + jitter for b in ("0.1", "1")},
        }
        for variant, acc in accs.items():
            rows = [_row(s, acc + d - 0.01 * i, 1000 - 100 * i) for i, s in enumerate(("[1.0]", "[0.5, 0.5]"))]
            rows += [
                _row("[0.5, 0.25, 0.25]", acc + d - 0.02, 400, trained=False),
                _row("[4x0.25]", acc + d - 0.03, 300),
            ]
            records.append(
                TrialRecord(f"{variant}-{k}", f"{variant}-seed{k}", variant, {"variant": variant, "repeat": k}, rows)
            )
    return {"ablation": _study("ablation", records)}


def test_c4_reads_does_not_help_as_no_gain_of_a_point():
    checks = CLAIMS["C4"].checks(_ablation(0.0))
    assert len(checks) == 16 and {c.bound for c in checks if c.op == "<="} == {1.0}
    # no difference at all, what the paper says, is decided: with a bound of 0 it never could be
    assert claim_verdict(checks) == "reproduced"
    assert claim_verdict(CLAIMS["C4"].checks(_ablation(0.4))) == "reproduced"  # a gain under a point
    assert claim_verdict(CLAIMS["C4"].checks(_ablation(3.0))) == "not reproduced"  # activations help
    strict = [Check(c.what, c.switch, c.a, c.b, c.op, 0.0) for c in checks]
    assert claim_verdict(strict) == "inconclusive"


def test_every_claim_on_the_papers_own_numbers_finds_what_the_paper_says():
    from orchestration.report.paper import load_paper
    from orchestration.report.studies import paper_results
    from orchestration.report.verdicts import check_verdicts

    paper = paper_results()
    for key, c in CLAIMS.items():
        checks = c.checks(paper)
        assert bool(checks) == bool(load_paper().claims[key].tables), key  # C6, C7: a figure, no values
        if checks:
            assert check_verdicts(checks, exact=True) == ["reproduced"] * len(checks), key
    # the numbers are the tables': Table 4's [1.0] is 1.00 point below the individual model (C1's bound)
    c1 = {(c.what, c.switch): c.diffs[0] for c in CLAIMS["C1"].checks(paper)}
    assert c1[("ParaDiS Wide IPKD - individual-1.0", "[1.0]")] == pytest.approx(72.13 - 73.13)
    assert len(CLAIMS["C1"].checks(paper)) == 8 and len(CLAIMS["C4"].checks(paper)) == 16
    # C2 and C5 pick the US width the tables name: total cost 0.725 for [0.5, 0.5], per device 0.5
    c2 = CLAIMS["C2"].checks(paper)[0]
    assert c2.diffs == pytest.approx([69.10 - 68.97])
    assert "US [0.5]" in CLAIMS["C5"].checks(paper)[0].what
    # a stricter reading than the paper's (no switch below the individual model) refutes its own Table 4
    strict = [Check(c.what, c.switch, c.a, c.b, c.op, 0.0) for c in CLAIMS["C1"].checks(paper)]
    assert claim_verdict(strict, exact=True) == "not reproduced"


def test_the_paper_file_is_checked_and_every_claim_quotes_it(tmp_path):
    from pydantic import ValidationError

    from orchestration.report.paper import PAPER_FILE, load_paper

    assert all(c.paper.quote and c.paper.reading for c in CLAIMS.values())
    bad = PAPER_FILE.read_text().replace("72.64", "726.4", 1)
    (tmp_path / "p.yaml").write_text(bad)
    with pytest.raises(ValidationError, match=r"726\.4 is not a percentage"):
        load_paper(tmp_path / "p.yaml")


def test_a_claim_is_refuted_only_when_a_check_fails_after_holms_correction():
    from orchestration.report.verdicts import check_verdicts, holm

    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]  # 0.01 <= 0.05/3; 0.03 > 0.05/2
    assert holm([0.01, 0.02, 0.04], 0.05) == [True, True, True]
    # three seeds 1.0, 1.4, 0.7 points below 0: one-sided p fails ~0.016, under 2.5 % on its own ...
    marginal = _check([-1.0, -1.4, -0.7])
    assert marginal.verdict() == "not reproduced" and marginal.p_values()[1] < 0.025
    # ... but not after Holm's correction over four checks (0.025 / 4)
    yes = _check([1.0, 1.1, 0.9])
    assert check_verdicts([marginal, yes, yes, yes]) == ["inconclusive", "reproduced", "reproduced", "reproduced"]
    assert claim_verdict([marginal, yes, yes, yes]) == "inconclusive"
    assert claim_verdict([marginal]) == "not reproduced"


def test_the_report_says_which_studies_are_missing():
    spec = load_study(ROOT / "studies" / "ablation.yaml")
    text = results_markdown({"baselines": _baselines(), "ablation": StudyResult("ablation", spec)}, "cmd")
    assert "| C1 |" in text and "## C4: inconclusive" in text
    assert "No data: ablation not run in this tracking store." in text
    assert "Not run in this tracking store" in text
    assert "studies/paper/ablation_mobilenet_imagenet.yaml" in text
    for key in CLAIMS:
        assert f"## {key}: " in text


def _log_study(uri, spec_key, records, status="FINISHED", overrides=None):
    from orchestration.tracking import open_tracker

    spec = load_study(ROOT / "studies" / f"{spec_key}.yaml", overrides=overrides)
    tracker = open_tracker(uri, spec.tracking.experiment)
    texts = {"spec/resolved.json": json.dumps(spec.model_dump(mode="json"))} if overrides is not None else {}
    parent = tracker.start_study(spec.name, {"paradis.study": spec.name}, texts)
    for r in records:
        tags = {"paradis.study": spec.name, "paradis.method": r.label, "paradis.search": json.dumps(r.params)}
        run = tracker.start_trial(r.trial_id, r.name, {}, tags)
        tracker.log_table(run, r.rows, "table/switches.json")
        tracker.finish(run, "FINISHED")
    tracker.finish(parent, status)
    return parent


def test_the_command_reads_the_newest_finished_run_of_each_study(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _log_study(uri, "baselines", _baselines(individual_acc=0.87).records)
    newest = _log_study(uri, "baselines", _baselines().records)
    _log_study(uri, "baselines", _baselines(individual_acc=0.99).records[:2], status="FAILED")  # newer, failed

    results = load_results(uri, ROOT / "studies", ["baselines", "ablation"])
    assert results["baselines"].run_id == newest and results["ablation"].run_id is None
    assert len(results["baselines"].records) == 9
    assert claim_verdict(CLAIMS["C1"].checks(results)) == "reproduced"

    out = tmp_path / "RESULTS.md"
    assert main(["results", "--tracking-uri", uri, "--output", str(out), "--study", "baselines"]) == 0
    text = out.read_text()
    assert "## C1: reproduced" in text and f"Run `{newest}`: 9 of 9 trials finished, 3 seed(s)" in text
    assert "sqlite:///.../mlflow.db" in text and str(tmp_path) not in text  # no path of this machine


def _shifted(records, by):
    out = []
    for r in records:
        params = {**r.params, "repeat": r.params["repeat"] + by}
        out.append(TrialRecord(r.trial_id + f"+{by}", r.name, r.label, params, r.rows))
    return out


def test_extra_seeds_of_the_same_configuration_are_pooled_and_nothing_else_is(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = _log_study(uri, "baselines", _baselines().records, overrides=["repeats=3"])
    other = _log_study(uri, "baselines", _shifted(_baselines().records, 10), overrides=["training.epochs=9"])
    extra = _log_study(uri, "baselines", _shifted(_baselines().records, 3), overrides=["repeats=3", "repeat_from=3"])
    result = load_results(uri, ROOT / "studies", ["baselines"])["baselines"]
    assert result.run_id == extra and result.run_ids == [extra, first] and other not in result.run_ids
    assert len(result.records) == 18
    c1 = CLAIMS["C1"].checks({"baselines": result})[0]
    assert c1.pairs.repeats == (0, 1, 2, 3, 4, 5)  # the other configuration's repeats 10-12 are not among them
    text = results_markdown({"baselines": result}, "cmd")
    assert f"Runs `{extra}`, `{first}` (seeds pooled): 18 of 18 trials finished, 6 seed(s)" in text


def test_repeat_from_numbers_the_extra_seeds_after_the_first_ones():
    from orchestration.trials import grid_points, run_config_for

    spec = load_study(ROOT / "studies" / "ablation.yaml", overrides=["repeats=2", "repeat_from=3"])
    points = grid_points(spec)
    assert sorted({p["repeat"] for p in points}) == [3, 4] and len(points) == 10
    base = run_config_for(load_study(ROOT / "studies" / "ablation.yaml"), {"variant": "paradis-ipkd"})
    assert run_config_for(spec, points[0]).training.seed == base.training.seed + 3
    from paradis.config import ConfigError

    with pytest.raises(ConfigError, match="repeat_from"):
        load_study(ROOT / "studies" / "search.yaml", overrides=["repeat_from=2"])


def test_the_runners_grid_is_the_grid_the_dry_run_lists(monkeypatch):
    """Ray Tune crosses the axes that grid_points crosses: the extra seeds of repeat_from are the
    repeats the runner trains (it once trained repeats 0 and 1 again)."""
    import itertools
    import sys
    import types

    from orchestration.search import SEARCHES
    from orchestration.trials import grid_points

    tune = types.SimpleNamespace(grid_search=lambda values: {"grid_search": list(values)})
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(tune=tune))  # no Ray imported
    for overrides in ([], ["repeats=2"], ["repeats=2", "repeat_from=3"]):
        spec = load_study(ROOT / "studies" / "ablation.yaml", overrides=overrides)
        space, searcher = SEARCHES["grid"].setup(spec)
        assert searcher is None
        crossed = [dict(zip(space, combo)) for combo in itertools.product(*(v["grid_search"] for v in space.values()))]
        assert crossed == grid_points(spec)
    assert space["repeat"] == {"grid_search": [3, 4]}


def test_the_command_refuses_a_missing_store_in_one_line(tmp_path, capsys):
    code = main(["results", "--tracking-uri", f"sqlite:///{tmp_path}/none.db", "--output", str(tmp_path / "r.md")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("report: error: no MLflow store") and err.count("\n") == 1
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "m.db").touch()
    code = main(["results", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--output", "/nonexistent/dir/r.md"])
    assert code == 2 and "its folder does not exist" in capsys.readouterr().err


def test_at_the_paper_scale_the_same_claims_read_the_studies_of_studies_paper(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _log_study(uri, "baselines", _baselines(individual_acc=0.87).records)  # the reduced run: not read
    paper = _log_study(uri, "paper/baselines_mobilenet_imagenet", _baselines().records)
    results = load_results(uri, ROOT / "studies", ["quickstart", "baselines"], scale="paper")
    assert list(results) == ["baselines"] and results["baselines"].run_id == paper
    out = tmp_path / "paper.md"
    assert main(["results", "--tracking-uri", uri, "--scale", "paper", "--output", str(out)]) == 0
    text = out.read_text()
    assert "## C1: reproduced" in text and "at the paper's scale" in text
    assert "`studies/paper/baselines_mobilenet_imagenet.yaml`" in text and "--scale paper" in text


def test_runs_without_the_search_tag_are_read_from_their_search_params():
    from orchestration.report.studies import search_values

    tagged = {"tags": {"paradis.search": '{"variant": "a", "repeat": 2}'}, "params": {"search.variant": "x"}}
    assert search_values(tagged) == {"variant": "a", "repeat": 2}
    older = {"tags": {}, "params": {"search.variant": "a", "search.repeat": "2", "training.lr": "0.2"}}
    assert search_values(older) == {"variant": "a", "repeat": 2}
    with pytest.raises(ValueError, match=r"run r1: its paradis\.search tag is not JSON"):
        search_values({"run_id": "r1", "tags": {"paradis.search": "not json"}, "params": {}})


def test_c7_pairs_each_narrow_switch_of_the_eight_with_the_us_width_of_its_macs_across_studies():
    eight = [
        TrialRecord(
            f"e{k}",
            f"eight-{k}",
            "ParaDiS Wide IPKD",
            {"training.switches": "eight", "repeat": k},
            [_row("[1.2]", 0.80, 1400), _row("[1.0]", 0.80 + 0.001 * k, 1000), _row("[0.5]", 0.70, 255)],
        )
        for k in range(3)
    ]
    results = {"scaling_8_switches": _study("scaling_8_switches", eight), "baselines": _baselines()}
    checks = CLAIMS["C7"].checks(results)
    assert [(c.switch, c.what.split(" - US ")[1]) for c in checks] == [
        ("[1.0]", "[1.0] (0.00 MMACs)"),
        ("[0.5]", "[0.5] (0.00 MMACs)"),
    ]
    # [1.0]: 80 + 0.1 k against 85.5 + 0.1 k: 5.5 points below; [0.5]: 70 against 77.5 + 0.1 k
    assert checks[0].diffs == pytest.approx([-5.5] * 3) and claim_verdict(checks) == "reproduced"
    assert CLAIMS["C7"].checks({"scaling_8_switches": results["scaling_8_switches"]}) == []  # no US to compare


def test_a_malformed_table_in_the_store_is_one_line_naming_the_run(tmp_path, capsys):
    from orchestration.tracking import open_tracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = _log_study(uri, "baselines", _baselines().records[:1])
    tracker = open_tracker(uri, "paradis-baselines")
    run = tracker.trial_details(parent)[0]["run_id"]
    tracker.log_text(run, '{"columns": ["switch"]}', "table/switches.json")  # no "data"
    code = main(["results", "--tracking-uri", uri, "--output", str(tmp_path / "r.md"), "--study", "baselines"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("report:")]  # MLflow logs its set-up too
    assert code == 2 and len(lines) == 1 and f"table/switches.json of run {run} is not a logged table" in lines[0]
    assert not (tmp_path / "r.md").exists()


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"top1": 0.5, "macs": 1}, "row 0: switch: Field required"),
        ({"switch": "[2x]", "top1": 0.5, "macs": 1}, "row 0: switch:"),
        ({"switch": "[1.0]", "top1": "high", "macs": 1}, "row 0: top1:"),
        ({"switch": "[1.0]", "top1": 50.0, "macs": 1}, "row 0: top1: Input should be less than or equal to 1"),
        ({"switch": "[1.0]", "top1": 0.5, "macs": -1}, "row 0: macs:"),
    ],
)
def test_a_crafted_table_in_the_store_is_one_line_naming_the_run(tmp_path, capsys, row, needle):
    from orchestration.tracking import open_tracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = _log_study(uri, "baselines", _baselines().records[:1])
    tracker = open_tracker(uri, "paradis-baselines")
    run = tracker.trial_details(parent)[0]["run_id"]
    table = {"columns": list(row), "data": [list(row.values())]}
    tracker.log_text(run, json.dumps(table), "table/switches.json")  # the whole table: this one row
    code = main(["results", "--tracking-uri", uri, "--output", str(tmp_path / "r.md"), "--study", "baselines"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("report:")]
    assert code == 2 and len(lines) == 1 and f"table/switches.json of run {run}: {needle}" in lines[0], lines
    assert not (tmp_path / "r.md").exists()


@pytest.mark.parametrize(
    "search, needle",
    [
        ({"variant": "ipkd", "repeat": "x"}, "repeat 'x' is not a repeat index"),
        ({"variant": "ipkd", "repeat": [1]}, "repeat '[1]' is not a repeat index"),
        ({"variant": "ipkd", "repeat": None}, "repeat 'None' is not a repeat index"),
        ({"variant": "ipkd", "repeat": 1.5}, "repeat '1.5' is not a repeat index"),
        ({"variant": "ipkd", "repeat": True}, "repeat 'True' is not a repeat index"),
        ({"variant": "ipkd", "repeat": -1}, "repeat '-1' is not a repeat index"),
        ("[" * 100_000 + "]" * 100_000, "tag is not JSON of a few levels"),
    ],
)
def test_a_crafted_search_tag_in_the_store_is_one_line_naming_the_run(tmp_path, capsys, search, needle):
    from orchestration.tracking import open_tracker, tag_names

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = _log_study(uri, "baselines", _baselines().records[:1])
    tracker = open_tracker(uri, "paradis-baselines")
    run = tracker.trial_details(parent)[0]["run_id"]
    tracker.set_tags(run, {tag_names.SEARCH: search if isinstance(search, str) else json.dumps(search)})
    code = main(["results", "--tracking-uri", uri, "--output", str(tmp_path / "r.md"), "--study", "baselines"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("report:")]
    assert code == 2 and len(lines) == 1 and f"run {run}" in lines[0] and needle in lines[0], lines
    assert not (tmp_path / "r.md").exists()


def test_names_read_from_the_store_cannot_break_out_of_the_report_tables():
    records = _baselines().records
    for r in records:
        if r.params["variant"] == "individual-0.5-0.5":
            r.params["variant"] = "x\n# Heading | <script>alert(1)</script>"
    text = results_markdown({"baselines": _study("baselines", records)}, "cmd")
    assert "<script>" not in text and "\n# Heading" not in text
    assert "x # Heading \\| &lt;script>alert(1)&lt;/script>" in text


def test_the_report_judges_convergence_from_the_curves_not_the_verdict_stored_with_a_run():
    study = _baselines()
    for r in study.records:  # the teacher gains 2 points over the last quarter of 4 epochs
        slug = r.rows[0]["switch"].strip("[]").replace(", ", "-")
        r.curves = [{"epoch": e, f"acc/{slug}": 0.80 + 0.02 * e, f"loss/{slug}": 1.0 / e} for e in range(1, 5)]
    stale = {
        "threshold": 1.0,
        "trials": {"p0": {"gain": 0.1, "switch": "acc/1.2"}},
        "verdict": "flattened",
        "worst": "p0",
    }
    study.convergence = [stale]
    text = results_markdown({"baselines": study}, "cmd")
    assert "gained at most +2.00 points" in text and "**still improving**" in text and "**flattened**" not in text

"""Repeated seeds: trials of one configuration grouped, mean ± sd and n per switch, paired differences
with Student's t interval; a repeat is a seed of the run configuration."""

import math
from pathlib import Path

import pytest

from orchestration.preflight import load_study
from orchestration.report.seeds import (
    SeedValues,
    compare_markdown,
    groups,
    interval95,
    mean_sd,
    paired,
    paired_differences,
    summary_markdown,
    summary_rows,
)
from orchestration.report.study import TrialRecord
from orchestration.trials import configuration_name, grid_points, run_config_for, trial_count, trial_name

ROOT = Path(__file__).resolve().parents[2]


def _row(switch, top1, macs=1000):
    return {
        "switch": switch,
        "trained": True,
        "top1": top1,
        "top5": None,
        "macs": macs,
        "max_device_macs": macs,
        "params": 1,
        "devices": 1,
    }


def _records():
    out = []
    ref = [0.80, 0.82, 0.84]
    other = [0.81, 0.84, 0.87]  # differences 0.01, 0.02, 0.03
    for k in range(3):
        out.append(
            TrialRecord(f"r{k}", f"ref-seed{k}_x", "ParaDiS", {"variant": "ref", "repeat": k}, [_row("[1.0]", ref[k])])
        )
        out.append(
            TrialRecord(
                f"o{k}",
                f"other-seed{k}_x",
                "ParaDiS IPKD",
                {"variant": "other", "repeat": k},
                [_row("[1.0]", other[k])],
            )
        )
    return out


def test_mean_sd_and_the_t_interval():
    mean, sd, n = mean_sd([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and sd == pytest.approx(1.0)
    m, lo, hi = interval95([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2)
    assert m == 2.0 and lo == pytest.approx(2.0 - half) and hi == pytest.approx(2.0 + half)
    assert math.isnan(interval95([1.0])[1])  # one seed: no interval


def test_records_group_by_configuration_and_pair_by_seed():
    recs = _records()
    gs = {g.name: g for g in groups(recs)}
    assert set(gs) == {"ref", "other"} and gs["ref"].values("[1.0]") == [0.80, 0.82, 0.84]
    md = summary_markdown(recs)
    assert "82.00 ± 2.00 (3)" in md and "84.00 ± 3.00 (3)" in md
    rows = {r["configuration"]: r for r in summary_rows(recs)}
    assert rows["other"]["values"] == [0.81, 0.84, 0.87] and rows["other"]["n"] == 3
    (d,) = paired_differences(recs, "ref")
    assert d["configuration"] == "other" and d["n"] == 3 and d["diff"] == pytest.approx(0.02)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert d["lo"] == pytest.approx(0.02 - half) and d["hi"] == pytest.approx(0.02 + half)
    assert "+2.00" in compare_markdown([d], sr=False)
    failed = [*recs, TrialRecord("f", "ref-seed3_x", "ParaDiS", {"variant": "ref", "repeat": 3}, [], status="ERROR")]
    assert {g.name: len(g.records) for g in groups(failed)} == {"ref": 3, "other": 3}  # failed seeds left out


def test_scores_of_seeds_trained_in_one_trial_count_as_seeds():
    row = {**_row("[1.0]", 0.85), "scores": [0.84, 0.86]}
    (g,) = groups([TrialRecord("t", "trial_x", "ParaDiS", {"training.beta": 0.5}, [row])])
    assert g.values("[1.0]") == [0.84, 0.86]


def test_a_repeat_is_a_seed_of_the_configuration():
    spec = load_study(ROOT / "studies/quickstart.yaml", overrides=["repeats=3", "compare=wide-ipkd"])
    assert trial_count(spec) == 9 and len(grid_points(spec)) == 9
    seeds = {run_config_for(spec, {"variant": "ipkd", "repeat": k}).training.seed for k in range(3)}
    assert seeds == {0, 1, 2}
    plain = run_config_for(spec, {"variant": "ipkd"})
    assert plain == run_config_for(spec, {"variant": "ipkd", "repeat": 0})  # repeat 0 is the configuration itself
    one = load_study(ROOT / "studies/quickstart.yaml")
    assert trial_count(one) == 3 and all("repeat" not in p for p in grid_points(one))


def test_compare_names_a_variant():
    from paradis.config import ConfigError

    with pytest.raises(ConfigError, match=r"compare: 'nope' is not one of search\.variants"):
        load_study(ROOT / "studies/quickstart.yaml", overrides=["repeats=2", "compare=nope"])


def test_a_failed_middle_seed_drops_its_pair_and_never_shifts_the_others():
    # "other" is exactly 1 point above "ref" on every seed; its seed 1 failed
    ref = [0.80, 0.90, 0.70]
    recs = [
        TrialRecord(f"r{k}", f"ref-seed{k}", "A", {"variant": "ref", "repeat": k}, [_row("[1.0]", v)])
        for k, v in enumerate(ref)
    ]
    recs += [
        TrialRecord(
            f"o{k}",
            f"other-seed{k}",
            "B",
            {"variant": "other", "repeat": k},
            [_row("[1.0]", ref[k] + 0.01)],
            status="ERROR" if k == 1 else "TERMINATED",
        )
        for k in range(3)
    ]
    (d,) = paired_differences(recs, "ref")
    assert (d["n"], d["unpaired"]) == (2, 1)
    assert d["diff"] == pytest.approx(0.01) and d["lo"] == pytest.approx(0.01) and d["hi"] == pytest.approx(0.01)
    assert "| other | [1.0] | +1.00 | [+1.00, +1.00] | 2 | 1 |" in compare_markdown([d], sr=False)


def test_a_seed_measured_twice_is_left_out_of_every_pair():
    recs = _records()
    # the same variant and repeat trained twice (say by an edited study): repeat 2 cannot be told apart
    recs.append(
        TrialRecord("dup", "other-seed2_y", "ParaDiS IPKD", {"variant": "other", "repeat": 2}, [_row("[1.0]", 0.5)])
    )
    gs = {g.name: g for g in groups(recs)}
    values = gs["other"].by_repeat("[1.0]")
    assert values.values == {0: 0.81, 1: 0.84} and values.duplicated == (2,)
    (d,) = paired_differences(recs, "ref")
    assert (d["n"], d["unpaired"]) == (2, 1) and d["diff"] == pytest.approx(0.015)


def test_pairs_follow_the_repeat_index_not_the_position():
    a, b = SeedValues({0: 0.5, 2: 0.7, 5: 0.9}), SeedValues({2: 0.6, 5: 0.6, 7: 0.1})
    pairs = paired(a, b, scale=100)
    assert pairs.repeats == (2, 5) and pairs.diffs == pytest.approx((10.0, 30.0)) and pairs.unpaired == 2


def test_a_configuration_without_a_variant_is_named_by_its_searched_values():
    recs = [
        TrialRecord(
            f"t{k}", f"t{k}", "ParaDiS", {"training.switches": s, "training.lr": 0.1, "repeat": k}, [_row("[1.0]", 0.8)]
        )
        for k, s in enumerate(["four", "eight"])
    ]
    assert [g.name for g in groups(recs)] == ["switches=four, lr=0.1", "switches=eight, lr=0.1"]
    assert configuration_name({}) == "base"
    assert trial_name({"variant": "ipkd", "repeat": 1}, "abc") == "ipkd-seed1_abc"
    assert trial_name({"training.switches": "eight"}, "abc") == "switches=eight_abc"

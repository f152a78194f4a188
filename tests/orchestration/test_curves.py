"""Learning curves: per-epoch rows from Tune's reports, each trial's teacher, and the verdict on
convergence from what the teacher still gained over the last quarter of training."""

import math

import pytest

from orchestration.report.curves import (
    convergence,
    convergence_line,
    curve_rows,
    curves_table,
    late_gain,
    teacher_key,
)
from orchestration.report.study import TrialRecord


def _curve(accs, switch="1.2"):
    return [{"epoch": e + 1, f"acc/{switch}": a, f"loss/{switch}": 1.0 / (e + 1)} for e, a in enumerate(accs)]


def test_curve_rows_keep_one_row_per_epoch_with_losses_and_measures_only():
    frame = [
        {"epoch": 1, "acc/1.2": 0.5, "loss/1.2": 2.0, "lr": 0.1, "table": "[...]", "trial_id": "x"},
        {"epoch": 2, "acc/1.2": 0.6, "acc/target": 0.6, "loss/1.2": math.nan},
        {"epoch": math.nan, "acc/1.2": 0.9},  # a report without an epoch (a failure's)
        {"epoch": 2, "loss/1.2": 1.5},  # the same epoch reported in two parts
    ]
    assert curve_rows(frame) == [
        {"epoch": 1, "acc/1.2": 0.5, "loss/1.2": 2.0},
        {"epoch": 2, "acc/1.2": 0.6, "acc/target": 0.6, "loss/1.2": 1.5},
    ]


def test_late_gain_is_the_last_quarter_of_the_epochs_in_points():
    # 8 epochs: the last quarter starts after epoch 6
    assert late_gain(_curve([0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.85, 0.86]), "acc/1.2") == pytest.approx(2.0)
    assert late_gain(_curve([0.6, 0.8]), "acc/1.2") == pytest.approx(20.0)  # 2 epochs: the last one
    assert late_gain(_curve([0.6]), "acc/1.2") is None
    psnr = [{"epoch": e, "psnr/1.0": 30 + 0.1 * e} for e in range(1, 5)]
    assert late_gain(psnr, "psnr/1.0") == pytest.approx(0.1)  # dB, not scaled


def test_each_trial_is_judged_by_its_own_widest_switch_and_the_worst_decides():
    flat = TrialRecord("a", "wide", "P", {}, curves=_curve([0.6, 0.8, 0.85, 0.86, 0.865, 0.868, 0.87, 0.871]))
    individual = TrialRecord("b", "ind", "I", {}, curves=_curve([0.7, 0.8, 0.84, 0.85], switch="0.5-0.5"))
    summary = convergence([flat, individual])
    assert summary["trials"]["wide"]["switch"] == "acc/1.2" and summary["trials"]["ind"]["switch"] == "acc/0.5-0.5"
    assert summary["worst"] == "ind" and summary["verdict"] == "still improving"  # +1.0 over its last epoch
    assert convergence([flat])["verdict"] == "flattened"
    line = convergence_line(convergence([flat]))
    assert (
        "gained at most +0.30 points" in line
        and "**flattened** (the rule: flattened when every trial gains under 1 point)" in line
    )
    assert convergence([TrialRecord("c", "c", "P", {})])["verdict"] == "no learning curves"
    rows = curves_table([individual])
    assert len(rows) == 8 and rows[0] == {"trial": "ind", "epoch": 1, "metric": "acc/0.5-0.5", "value": 0.7}


def test_the_teacher_is_the_widest_switch_trained_not_one_only_evaluated():
    # IPKD without the wide model: [1.2] is evaluated every epoch (no training loss), [1.0] is trained
    curve = [
        {**row, "acc/1.0": 0.80 + 0.01 * row["epoch"], "loss/1.0": 1.0 / row["epoch"]}
        for row in _curve([0.5, 0.6, 0.5, 0.6])
    ]
    for row in curve:
        del row["loss/1.2"]
    assert teacher_key(curve) == ("acc/1.0", "loss/1.0")
    summary = convergence([TrialRecord("a", "ipkd", "P", {}, curves=curve)])
    assert summary["trials"]["ipkd"]["gain"] == pytest.approx(1.0)  # not the untrained [1.2]'s +10
    # with no loss logged at all (an older store), the widest switch measured
    assert teacher_key([{k: v for k, v in r.items() if not k.startswith("loss/")} for r in curve])[0] == "acc/1.2"

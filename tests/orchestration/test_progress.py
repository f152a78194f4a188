"""The per-switch progress table the driver prints on Ray's default output (a Tune callback; here its
Ray-free part): a row per trial with state, epoch, loss and each switch's measure, at most every 30 s."""

import io
from types import SimpleNamespace

from orchestration.preflight import load_study
from orchestration.progress import ProgressTable
from tests.orchestration.conftest import ROOT


def _trial(trial_id, status, config, **result):
    return SimpleNamespace(trial_id=trial_id, status=status, config=config, last_result=result)


def test_a_row_per_trial_with_each_switchs_measure_and_throttled():
    spec = load_study(ROOT / "studies" / "quickstart.yaml", overrides=["repeats=2", "training.epochs=2"])
    now = [100.0]
    out = io.StringIO()
    table = ProgressTable(spec, every_s=30, out=out, clock=lambda: now[0])
    trials = [
        _trial("a_00000", "RUNNING", {"variant": "ipkd", "repeat": 1}, epoch=1, loss=1.2345, **{"acc/1.0": 0.8125}),
        _trial("a_00001", "PENDING", {"variant": "wide-ipkd", "repeat": 0}),
        _trial("a_00002", "TERMINATED", {"variant": "wide-ipkd-a", "repeat": 0}, epoch=2, **{"acc/0.5-0.5": 0.5}),
    ]
    assert table.show(trials)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0] == "[paradis] 1 of 3 trial(s) ended"
    assert lines[1].split()[:6] == ["trial", "state", "epoch", "loss", "acc", "[1.2]"]
    running = next(line for line in lines if "ipkd seed 1 (a_00000)" in line)
    assert running.split()[4:8] == ["RUNNING", "1/2", "1.2345", "-"] and running.split()[8] == "81.25"
    pending = next(line for line in lines if "(a_00001)" in line)
    assert pending.split()[4:7] == ["PENDING", "0/2", "-"]
    now[0] += 10
    assert not table.show(trials)  # within 30 s: nothing more
    assert table.show(trials, force=True)  # a trial ended: printed at once
    now[0] += 31
    assert table.show(trials)
    assert out.getvalue().count("trial(s) ended") == 3

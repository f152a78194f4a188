"""The planner's choices on constructed per-switch tables."""

import json

import pytest

from orchestration.deploy import main
from paradis.deploy import Device, PlanError, SwitchOption, best_fallback, parse_device, plan, read_table
from paradis.deploy.planner import parse_size
from paradis.switch import parse_switch

M = 1_000_000


def option(switch, acc, macs, params, seconds=None):
    return SwitchOption(
        parse_switch(switch), acc, tuple(macs), tuple(params), None if seconds is None else tuple(seconds)
    )


# Shaped like the README's table: the 0.5 sub-network costs about four times a 0.25 one.
TABLE = [
    option("[1.0]", 0.906, [380 * M], [73_000]),
    option("[0.5, 0.5]", 0.899, [108 * M, 108 * M], [20_000, 20_000]),
    option("[0.5, 0.25, 0.25]", 0.888, [108 * M, 33 * M, 33 * M], [20_000, 6_000, 6_000]),
    option("[4x0.25]", 0.890, [33 * M] * 4, [6_000] * 4),
]
RATE = 1e9  # MACs per second of the reference device: [1.0] takes 380 ms, a 0.5 sub-network 108 ms


def test_budget_excluding_the_full_network_picks_two_halves():
    p = plan([Device("a"), Device("b")], 0.2, TABLE, macs_per_second=RATE)
    assert p.switch == parse_switch("[0.5, 0.5]") and p.accuracy == 0.899
    assert sorted(a.device for a in p.assignment) == ["a", "b"]
    assert p.latency_s == pytest.approx(0.108)
    text = p.explain()
    assert "chosen: switch [0.5, 0.5]" in text
    assert "[1.0] (top-1 90.60 %, 380.000 ms): over the budget" in text
    assert "[4x0.25] (top-1 89.00 %): needs 4 devices, 2 given" in text
    # a generous budget: the full network, on the faster device
    p = plan([Device("slow", 0.5), Device("fast", 2.0)], 1.0, TABLE, macs_per_second=RATE)
    assert str(p.switch) == "[1.0]" and p.device_of(0) == "fast" and p.latency_s == pytest.approx(0.19)


def test_slow_device_gets_the_smaller_sub_network():
    devices = [Device("slow", speed=0.4), Device("fast1", 1.0), Device("fast2", 1.0)]
    table = [o for o in TABLE if str(o.switch) == "[0.5, 0.25, 0.25]"]
    p = plan(devices, 0.2, table, macs_per_second=RATE)
    assert p.device_of(0) in ("fast1", "fast2")
    assert "slow" in (p.device_of(1), p.device_of(2))
    assert p.latency_s == pytest.approx(0.108)
    # one more slow device than the switch can hide: the 0.5 sub-network still gets the fast one
    devices = [Device("slow1", 0.4), Device("slow2", 0.4), Device("fast", 1.0)]
    p = plan(devices, 0.2, table, macs_per_second=RATE)
    assert p.device_of(0) == "fast" and p.latency_s == pytest.approx(0.108)


def test_memory_limits_exclude_switches_and_steer_the_assignment():
    small = [Device(n, memory=30_000 * 4) for n in "abcd"]  # 30k parameters each: [1.0] does not fit
    p = plan(small, 10.0, TABLE, macs_per_second=RATE)
    assert str(p.switch) == "[0.5, 0.5]"
    assert "[1.0]" in p.explain() and "more than any device has" in p.explain()
    tiny = [Device("a", memory=10_000 * 4), Device("b", memory=10_000 * 4), Device("c", memory=25_000 * 4)]
    p = plan(tiny, 10.0, TABLE, macs_per_second=RATE)
    assert str(p.switch) == "[0.5, 0.25, 0.25]" and p.device_of(0) == "c"  # the only one with room for 0.5
    # the fast device has too little memory for the big part: the big part goes where it fits
    devices = [Device("fast", 4.0, memory=10_000 * 4), Device("mid", 1.0), Device("other", 1.0)]
    p = plan(devices, 1.0, [TABLE[2]], macs_per_second=RATE)
    assert p.device_of(0) in ("mid", "other") and "fast" in (p.device_of(1), p.device_of(2))


def test_measured_seconds_take_precedence_and_ties_prefer_fewer_devices():
    table = [
        option("[0.5, 0.5]", 0.9, [108 * M] * 2, [1] * 2, seconds=[0.05, 0.05]),
        option("[4x0.25]", 0.9, [33 * M] * 4, [1] * 4, seconds=[0.05] * 4),
    ]
    p = plan([Device(str(i)) for i in range(4)], 0.06, table)  # no MACs rate needed: measured
    assert str(p.switch) == "[0.5, 0.5]" and p.cost_source == "measured"
    assert "as accurate but slower or on more devices" in p.explain()
    with pytest.raises(PlanError, match="give macs_per_second"):
        plan([Device("a")], 1.0, TABLE)


def test_nothing_fits_is_a_clear_error():
    with pytest.raises(PlanError, match=r"no switch fits 2 device\(s\) within 10.000 ms") as err:
        plan([Device("a"), Device("b")], 0.01, TABLE, macs_per_second=RATE)
    assert "[0.5, 0.5]: over the budget (108.000 ms)" in str(err.value)
    with pytest.raises(PlanError, match="no devices"):
        plan([], 1.0, TABLE, macs_per_second=RATE)
    with pytest.raises(PlanError, match="distinct"):
        plan([Device("a"), Device("a")], 1.0, TABLE, macs_per_second=RATE)
    with pytest.raises(ValueError, match="speed -1"):
        Device("a", -1)
    with pytest.raises(ValueError, match="memory True must be a positive number of bytes"):
        Device("a", memory=True)
    with pytest.raises(PlanError, match="latency budget True"):
        plan([Device("a")], True, TABLE, macs_per_second=RATE)


def test_device_and_table_parsing(tmp_path):
    assert parse_device("gpu0:2:1.5GB") == Device("gpu0", 2.0, 1_500_000_000)
    assert parse_device("phone") == Device("phone")
    assert parse_size("2GiB") == 2 * 2**30
    with pytest.raises(ValueError, match="not a size"):
        parse_device("x:1:lots")
    with pytest.raises(ValueError, match="not a number"):
        parse_device("x:fast")
    path = tmp_path / "table.json"
    path.write_text(json.dumps([o.as_dict() for o in TABLE]))
    assert read_table(path) == TABLE
    path.write_text(json.dumps([{"switch": "[0.5, 0.5]", "accuracy": 0.9, "device_macs": [1]}]))
    with pytest.raises(ValueError, match="lacks 'device_params'"):
        read_table(path)
    assert str(best_fallback(TABLE, 3)) == "[1.0]"
    assert str(best_fallback(TABLE, 3, available=["[0.5, 0.25, 0.25]", "[0.5, 0.5]", "[4x0.25]"])) == "[0.5, 0.5]"
    assert str(best_fallback(TABLE, 4, available=["[0.5, 0.25, 0.25]", "[4x0.25]"])) == "[4x0.25]"
    assert best_fallback(TABLE, 1, available=["[4x0.25]"]) is None


def test_command_line(tmp_path, capsys):
    path = tmp_path / "table.json"
    path.write_text(json.dumps([o.as_dict() for o in TABLE]))
    args = ["plan", "--table", str(path), "--device", "a:1", "--device", "b:1", "--macs-per-second", "1e9"]
    assert main([*args, "--budget-ms", "200", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("chosen: switch [0.5, 0.5]")
    assert json.loads(out.strip().splitlines()[-1])["switch"] == "[0.5, 0.5]"
    assert main([*args, "--budget-ms", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deploy plan: error: no switch fits") and "\n" not in err


def test_greedy_assignment_equals_the_exhaustive_one_when_memory_does_not_bind(monkeypatch):
    import paradis.deploy.planner as planner

    devices = [Device(f"d{i}", speed) for i, speed in enumerate([0.3, 2.0, 1.0, 0.7, 1.5])]
    exhaustive = [plan(devices, 10.0, [o], macs_per_second=RATE) for o in TABLE]
    monkeypatch.setattr(planner, "MAX_ENUMERATED", 0)  # every switch above the limit: greedy
    for want in exhaustive:
        got = plan(devices, 10.0, [o for o in TABLE if o.switch == want.switch], macs_per_second=RATE)
        seconds = [a.seconds for a in got.assignment]
        assert (max(seconds), sum(seconds)) == pytest.approx(
            (max(a.seconds for a in want.assignment), sum(a.seconds for a in want.assignment))
        )
        assert got.device_of(0) == "d1"  # the largest (or an equal) sub-network on the fastest device
    assert exhaustive[2].latency_s == pytest.approx(0.108 / 2.0)  # [0.5, 0.25, 0.25]: 0.5 on d1


def test_a_device_without_a_latency_for_a_switch_is_said_so_not_a_memory_shortage():
    """Found by the second adversarial pass: device b's table lacked [0.5, 0.5], and the plan blamed memory."""
    full = SwitchOption(parse_switch("[1.0]"), 0.9, (1000,), (10,))
    halves = SwitchOption(parse_switch("[0.5, 0.5]"), 0.8, (500, 500), (5, 5))
    latencies = {"a": {full.switch: (0.001,), halves.switch: (0.0005, 0.0005)}, "b": {full.switch: (0.001,)}}
    result = plan([Device("a"), Device("b")], 0.01, [full, halves], latencies=latencies)
    assert result.switch == full.switch
    why = {s: reason for s, _, _, reason in result.considered}[halves.switch]
    assert why == "2 sub-networks need 2 devices with a latency for them; none for: b", why

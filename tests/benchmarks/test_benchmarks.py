"""The benchmarks' arithmetic (never their timings): the multiply-add ratios behind the limit, and that
each benchmark runs end to end in its quick form."""

import pytest
import torch

from benchmarks import step_peak, switch_execution
from benchmarks.common import Row
from paradis import create_model, parse_switch, profile


@pytest.mark.parametrize("name", ["mobilenet_v1_small", "resnet_small"])
@pytest.mark.parametrize("k", [2, 4, 8])
def test_convolution_ratios_sum_to_the_switch_multiply_adds(name, k):
    size = switch_execution.MODELS[name]
    model = create_model(name, num_classes=10, in_chans=size[0])
    switch = switch_execution.equal_switch(k)
    assert switch == parse_switch(f"[{k}x{1 / k:g}]")
    ratios = switch_execution.conv_ratios(model, switch)
    stem_out = model.stem.out_ranges(parse_switch("[1.0]"))[0][1]
    assert ratios[(stem_out, size[0], 3, 3)] == 1.0  # the stem reads the image: every output channel
    assert sorted(set(ratios.values())) == [1 / k, 1.0]
    # weighting each convolution's [1.0] multiply-adds by its ratio gives the switch's convolution cost
    full, part = profile(model, "[1.0]", size), profile(model, switch, size)
    conv_full = full.macs - model.head.weight.shape[0] * model.feature_base
    conv_part = part.macs - model.head.weight.shape[0] * model.feature_base
    depthwise = sum(
        m.out_ranges(parse_switch("[1.0]"))[0][1] * 9 * _spatial(model, m, size)
        for _, m in model.range_layers()
        if getattr(m, "depthwise", False)
    )
    assert conv_part - depthwise == pytest.approx(_weighted(model, ratios, size), rel=1e-9)
    assert conv_full > conv_part


def _spatial(model, layer, size):
    seen = {}

    def hook(module, args, out):
        seen["hw"] = out.shape[2] * out.shape[3]

    handle = layer.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, *size), "[1.0]")
    handle.remove()
    return seen["hw"]


def _weighted(model, ratios, size):
    total = 0.0
    for _, m in model.range_layers():
        if getattr(m, "kernel_size", None) is None or m.depthwise:
            continue
        o, i = (
            m.out_ranges(parse_switch("[1.0]"))[0][1],
            (m.weight.shape[1] if m.in_base is None else m.in_ranges(parse_switch("[1.0]"))[0][1]),
        )
        macs = o * i * m.kernel_size**2 * _spatial(model, m, size)
        total += macs * ratios[(o, i, m.kernel_size, m.kernel_size)]
    return total


def test_row_ratio_and_goal():
    row = Row("b", "case", "ours", 1.2, "anchor", 1.0, goal=1.3)
    assert row.ratio == pytest.approx(1.2)
    assert "met" in row.line() and "MISSED" not in row.line()
    assert "MISSED" in Row("b", "case", "ours", 2.0, "anchor", 1.0, goal=1.3).line()


@pytest.mark.slow
def test_quick_benchmarks_run(tmp_path):
    from benchmarks import run

    out = tmp_path / "rows.json"
    run.main(["switch_execution", "training_step", "data_loading", "--quick", "--json", str(out)])
    import json

    rows = json.loads(out.read_text())
    assert {r["benchmark"] for r in rows} == {"switch_execution", "training_step", "data_loading"}
    assert all(r["project_s"] > 0 and r["anchor_s"] > 0 for r in rows)


# --- step_peak: convolution FLOP from shapes, the kinds' attribution, the quick run ------------------


def test_step_peak_conv_flops_of_known_shapes():
    # 2 images, 4 -> 6 channels in 2 groups, 3x3, 8x8: 2 * 2 * 6 * 8 * 8 * (4 / 2) * 3 * 3
    assert step_peak.conv_flops((2, 4, 8, 8), (6, 2, 3, 3), (1, 1), (1, 1), (1, 1), 2) == 27648
    assert step_peak.conv_flops((2, 4, 8, 8), (6, 2, 3, 3), (2, 2), (1, 1), (1, 1), 2) == 27648 // 4
    assert step_peak.conv_flops((1, 3, 7, 7), (5, 3, 1, 1), (1, 1), (0, 0), (1, 1), 1) == 2 * 5 * 49 * 3
    assert step_peak.conv_kind((16, 1, 3, 3), 16) == step_peak.DEPTHWISE
    assert step_peak.conv_kind((16, 1, 3, 3), 1) == step_peak.DENSE  # a stem reading one channel
    assert step_peak.conv_kind((32, 8, 1, 1), 2) == step_peak.DENSE  # grouped, not depthwise


@pytest.mark.parametrize("input_grad", [True, False])
def test_step_peak_backward_counts_each_gradient_as_a_forward(input_grad):
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    x = torch.randn(2, 8, 6, 6, requires_grad=input_grad)
    with torch.profiler.profile(record_shapes=True) as prof:
        conv(x).sum().backward()
    counted = [step_peak.event_conv_flops(e) for e in prof.events()]
    counted = [c for c in counted if c is not None]
    forward = step_peak.conv_flops(x.shape, conv.weight.shape, (1, 1), (1, 1), (1, 1), 8)
    assert counted == [(step_peak.DEPTHWISE, forward), (step_peak.DEPTHWISE, forward * (1 + input_grad))]


@pytest.mark.parametrize("switch", ["[1.2]", "[1.0]", "[4x0.25]"])
def test_step_peak_forward_flops_are_twice_the_model_multiply_adds(switch):
    model = create_model("mobilenet_v1_small", num_classes=10, in_chans=1, wide_factor=1.2)
    with torch.profiler.profile(record_shapes=True) as prof, torch.no_grad():
        model(torch.randn(3, 1, 28, 28), switch)
    counted = [step_peak.event_conv_flops(e) for e in prof.events() if e.name == "aten::convolution"]
    p = profile(model, switch, (1, 28, 28))
    head = model.head.weight.shape[0] * sum(b - a for a, b in model.head.in_ranges(parse_switch(switch)))
    assert sum(f for _, f in counted) == 3 * 2 * (p.macs - head)
    depthwise = [m for _, m in model.range_layers() if getattr(m, "depthwise", False)]
    assert sum(k == step_peak.DEPTHWISE for k, _ in counted) == len(depthwise)


@pytest.mark.slow
def test_step_peak_attribution_adds_up_to_the_step():
    batch = 2
    step, model = step_peak.make_step(batch)
    step()
    events = step_peak.profile_steps(step, model, 1)
    tallies = step_peak.attribute(events)
    assert sum(t.total for t in tallies.values()) == pytest.approx(events[0].cpu_time_total / 1e6, rel=1e-6)
    for kind in (step_peak.DENSE, step_peak.DEPTHWISE, step_peak.BN, step_peak.LOSS):
        assert tallies[kind].forward > 0 and tallies[kind].backward > 0 and tallies[kind].optimizer == 0
    assert tallies[step_peak.OPTIMIZER].optimizer > 0 and tallies[step_peak.OPTIMIZER].forward == 0
    # every switch's convolutions forward, then backward for input and weight (the stem: weight only)
    macs = head = stem = 0
    for s in ["[1.2]", *step_peak.SWITCHES]:
        macs += profile(model, s, (1, 28, 28)).macs
        head += model.head.weight.shape[0] * sum(b - a for a, b in model.head.in_ranges(parse_switch(s)))
        stem += sum(b - a for a, b in model.stem.out_ranges(parse_switch(s))) * 9 * 28 * 28
    flop = sum(t.flop for t in tallies.values())
    assert flop == batch * 2 * (3 * (macs - head) - stem)


@pytest.mark.slow
def test_quick_step_peak_runs(tmp_path):
    out = tmp_path / "rows.json"
    rows = step_peak.main(["--quick", "--json", str(out)])
    dense, depthwise, whole = rows
    assert [r.project for r in rows] == [step_peak.DENSE, step_peak.DEPTHWISE, "whole step"]
    assert all(r.project_s > 0 and r.anchor_s > 0 for r in rows)
    assert whole.anchor_s == pytest.approx(dense.anchor_s + depthwise.anchor_s)  # all conv FLOP at peak
    assert dense.extra["gemm_gflops"] > 0 and dense.extra["conv_gflops"] > 0
    assert step_peak.main(["--quick", "--device", "cuda"]) == []


# --- time_to_accuracy: the main job as a user runs it -----------------------------------------------


def test_time_to_accuracy_goal_needs_both_accuracy_and_time():
    from benchmarks.time_to_accuracy import line

    run = {"wall_s": 290.0, "loop_s": 250.0, "top1": 0.881, "best": "t", "utilisation": 0.9}
    run |= {"load_before": 0.1, "load_after": 1.9}
    assert line("this", run).endswith("met)")
    assert line("this", {**run, "top1": 0.879}).endswith("MISSED)")
    assert line("this", {**run, "wall_s": 301.0}).endswith("MISSED)")


@pytest.mark.slow
def test_quick_time_to_accuracy_runs_the_study_as_a_user_does(tmp_path):
    from benchmarks import time_to_accuracy

    out = tmp_path / "rows.json"
    (row,) = time_to_accuracy.main(["--quick", "--json", str(out)])
    (run,) = row.extra["runs"]
    assert row.project.startswith("this (") and row.project_s == run["wall_s"] > run["loop_s"] > 0
    assert 0 < run["top1"] <= 1 and 0 < run["utilisation"] <= 1.05
    assert run["best"].startswith(("wide-ipkd", "ipkd"))

"""The benchmarks' arithmetic (never their timings): the multiply-add ratios behind the limit, and that
each benchmark runs end to end in its quick form."""

import pytest
import torch

from benchmarks import switch_execution
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

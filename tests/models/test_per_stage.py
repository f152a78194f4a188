"""Switches with one width per stage keep every guarantee of uniform switches."""

from itertools import pairwise

import pytest
import torch

from paradis import calibrate_bn, create_model, parse_switch, profile
from paradis.costs import count_macs
from paradis.layers import RangeConv2d, RangeLinear, SwitchableBatchNorm2d
from paradis.models.resnet import Bottleneck
from tests.conftest import MODEL_INPUTS
from tests.models.ownership import assert_sub_network_ignores_outside_weights, train_some_switches

PER_STAGE = {
    "mobilenet_v1_small": [
        "[0.25/0.5/0.75/0.375, 0.5/0.25/0.25/0.5]",
        "[0.375/0.5/0.25/0.125, 0.25, 0.5/0.125/0.25/0.375]",
        "[0.125/0.25/0.5/0.25]",
    ],
    "resnet_small": ["[0.25/0.5/0.75, 0.5/0.25/0.25]", "[0.375/0.25/0.125, 0.25, 0.25/0.5/0.125]", "[0.75/0.25/0.5]"],
}


@pytest.mark.parametrize(("name", "stages"), [("mobilenet_v1_small", 4), ("resnet_small", 3), ("mobilenet_v1", 5)])
def test_every_layer_has_a_stage_and_stages_change_only_where_resolution_does(name, stages):
    model = create_model(name, num_classes=10, in_chans=MODEL_INPUTS[name][0])
    assert model.num_stages == stages
    for _, layer in model.range_layers():
        assert layer.in_stage is None if layer.in_base is None else layer.in_stage in range(stages)
        assert layer.out_stage is None if layer.out_base is None else layer.out_stage in range(stages)
        if layer.in_stage is not None and layer.out_stage is not None and layer.in_stage != layer.out_stage:
            # a stage boundary is crossed only by a layer mapping channels (pointwise or projection)
            assert isinstance(layer, RangeConv2d) and not layer.depthwise and layer.out_stage == layer.in_stage + 1
    if name == "resnet_small":
        for block in model.blocks:
            assert isinstance(block, Bottleneck)
            # the residual sum adds the branch and the shortcut in one stage
            ref = block.conv3.out_stage
            assert (block.shortcut.bn.out_stage if block.shortcut else block.conv1.in_stage) == ref


@pytest.mark.parametrize("name", list(PER_STAGE))
def test_ranges_are_contiguous_and_disjoint_in_every_layer(name):
    model = create_model(name, num_classes=10, in_chans=MODEL_INPUTS[name][0])
    for text in PER_STAGE[name]:
        s = model.resolve(text)
        for _, layer in model.range_layers():
            for ranges in (layer.in_ranges(s), layer.out_ranges(s)):
                if ranges is None:
                    continue
                assert ranges[0][0] == 0
                assert all(a[1] == b[0] for a, b in pairwise(ranges))
                assert all(r[1] > r[0] for r in ranges)


@pytest.mark.parametrize("name", list(PER_STAGE))
def test_per_stage_sub_network_ignores_weights_outside_its_slice(name):
    shape = MODEL_INPUTS[name]
    model = create_model(name, num_classes=10, in_chans=shape[0]).train()
    x = torch.randn(4, *shape)
    for text in PER_STAGE[name][:2]:
        assert_sub_network_ignores_outside_weights(model, model.resolve(text), x)


@pytest.mark.parametrize("name", list(PER_STAGE))
def test_per_stage_extraction_costs_and_private_statistics(name):
    shape = MODEL_INPUTS[name]
    model = create_model(name, num_classes=10, in_chans=shape[0])
    trained = ["[1.0]", "[0.5, 0.5]", PER_STAGE[name][0]]
    never = PER_STAGE[name][1:]
    train_some_switches(model, shape, trained, never)
    x = torch.randn(3, *shape)
    for text in trained + never:
        s = parse_switch(text)
        extracted = model.extract(s)
        assert len(extracted.subnets) == len(s)
        with torch.no_grad():
            torch.testing.assert_close(extracted(x), model(x, s), rtol=1e-5, atol=1e-5)
        assert not any(isinstance(m, (RangeConv2d, RangeLinear, SwitchableBatchNorm2d)) for m in extracted.modules())
        # per-device cost: the devices add up to the fused pass, and a narrower stage costs less
        p = profile(model, s, shape)
        assert len(p.device_macs) == len(s)
        with torch.no_grad():
            assert sum(p.device_macs) == p.macs == count_macs(lambda s=s: model(x[:1], s))
    # each per-stage switch has its own statistics under its own key, distinct from the uniform ones
    keys = set(next(model.bn_layers()).stat_keys())
    assert {parse_switch(t).key for t in trained + never} <= keys
    assert len({parse_switch(t).key for t in trained + never}) == len(trained + never)
    assert set(model.bn_switches()) >= {parse_switch(t) for t in trained + never}


def test_calibrating_a_per_stage_switch_touches_only_its_statistics():
    model = create_model("mobilenet_v1_small", num_classes=10)
    a, b = PER_STAGE["mobilenet_v1_small"][:2]
    train_some_switches(model, (1, 28, 28), ["[1.0]", a], [])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calibrate_bn(model, b, [torch.randn(8, 1, 28, 28) for _ in range(2)])
    after = model.state_dict()
    changed = {k for k in after if k not in before or not torch.equal(after[k], before[k])}
    assert changed and all(k.endswith(f"__{parse_switch(b).key}") for k in changed), changed
    # and a state dict round trip restores the per-stage statistics
    fresh = create_model("mobilenet_v1_small", num_classes=10)
    fresh.load_state_dict(after)
    x = torch.randn(2, 1, 28, 28)
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x, b), model(x, b))


def test_stage_widths_change_the_cost_where_they_apply():
    model = create_model("mobilenet_v1_small", num_classes=10)
    base = profile(model, "[0.5]", (1, 28, 28)).macs
    cheaper = [
        profile(model, f"[{'/'.join('0.25' if i == k else '0.5' for i in range(4))}]", (1, 28, 28)).macs
        for k in range(4)
    ]
    assert all(c < base for c in cheaper)
    assert len(set(cheaper)) == 4  # every stage has its own cost


def test_a_per_stage_switch_must_fit_the_model():
    model = create_model("resnet_small", num_classes=10, in_chans=3)
    with pytest.raises(ValueError, match="gives 4 stage widths per sub-network; the model has 3 stages"):
        model.resolve("[0.25/0.5/0.75/0.5]")
    with pytest.raises(ValueError, match="wider than the model's maximum width"):
        model.resolve("[0.75/0.5/0.5, 0.5]")
    with pytest.raises(ValueError, match=r"no whole channel in layer .*\(stage 0\)"):
        model.resolve("[0.01/0.5/0.5]")

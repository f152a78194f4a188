import io

import pytest
import torch
import torchvision

import paradis
from paradis import calibrate_bn, create_model, list_models, parse_switch, profile
from paradis.layers import RangeConv2d, RangeLinear, SwitchableBatchNorm2d
from paradis.models import register_model
from tests.conftest import MODEL_INPUTS
from tests.models.ownership import assert_sub_network_ignores_outside_weights, train_some_switches

SWITCHES = ["[1.2]", "[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]", "[8x0.125]"]


def test_registry_lists_and_fails_loudly():
    assert {"mobilenet_v1", "mobilenet_v1_small", "resnet50", "resnet_small"} <= set(list_models())
    with pytest.raises(ValueError, match=r"unknown model 'mobilenet_v2'; known: .*mobilenet_v1"):
        create_model("mobilenet_v2", num_classes=10)
    with pytest.raises(ValueError, match="already registered"):

        @register_model
        def resnet50(**kwargs):
            raise AssertionError

    with pytest.raises(ValueError, match=r"num_classes 0"):
        create_model("resnet50", num_classes=0)
    with pytest.raises(ValueError, match=r"wide_factor 0\.8"):
        create_model("resnet50", num_classes=10, wide_factor=0.8)


@pytest.mark.parametrize(
    ("name", "params", "mmacs"),
    [("mobilenet_v1", 4_231_976, 568.7), ("resnet50", 25_557_032, 4089.2), ("resnet18", 11_689_512, 1814.1)],
)
def test_reference_counts_at_224(name, params, mmacs):
    model = create_model(name, num_classes=1000)
    p = profile(model, "[1.0]", (3, 224, 224))
    assert p.params == params
    assert round(p.macs / 1e6, 1) == mmacs
    assert p.device_macs == (p.macs,)


def _copy_torchvision(ours, theirs):
    """Load torchvision weights into the [1.0] slices of a ParaDiS ResNet."""
    t_layers = [m for m in theirs.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear))]
    o_layers = [m for m in ours.modules() if isinstance(m, (RangeConv2d, SwitchableBatchNorm2d, RangeLinear))]
    assert len(t_layers) == len(o_layers)
    full = parse_switch("[1.0]")
    with torch.no_grad():
        for t, o in zip(t_layers, o_layers):
            if isinstance(t, torch.nn.BatchNorm2d):
                o.weight[: t.num_features] = t.weight
                o.bias[: t.num_features] = t.bias
                o.reset_stats(full)
                mean, var, _ = o.stats(full)
                mean.copy_(t.running_mean)
                var.copy_(t.running_var)
            else:
                w = t.weight
                o.weight[: w.shape[0], : w.shape[1]] = w
                if t.bias is not None:
                    o.bias[: w.shape[0]] = t.bias


@pytest.mark.parametrize("name", ["resnet50", "resnet18"])
def test_full_switch_is_exactly_torchvision(name):
    theirs = getattr(torchvision.models, name)(num_classes=1000)
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics and affine terms
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    ours = create_model(name, num_classes=1000)
    _copy_torchvision(ours, theirs)
    x = torch.randn(2, 3, 64, 64)
    theirs.eval(), ours.eval()
    torch.testing.assert_close(ours(x, "[1.0]"), theirs(x), rtol=1e-4, atol=1e-4)
    theirs.train(), ours.train()
    torch.testing.assert_close(ours(x, "[1.0]", bn_update="none"), theirs(x), rtol=1e-4, atol=1e-4)


def test_wide_switch_is_a_wider_network():
    model = create_model("resnet50", num_classes=1000, wide_factor=1.2)
    assert model.stem.weight.shape[0] == 77  # 1.2 x 64 = 76.8, rounded half up
    assert model.head.weight.shape == (1000, round(1.2 * 2048))
    p_wide, p_full = profile(model, "1.2", (3, 64, 64)), profile(model, "1.0", (3, 64, 64))
    assert 1.2**2 * 0.95 < p_wide.macs / p_full.macs < 1.2**2 * 1.05


@pytest.mark.parametrize("name", list(MODEL_INPUTS))
@pytest.mark.parametrize("switch", ["[0.5, 0.25, 0.25]", "[4x0.25]"])
def test_sub_network_ignores_weights_outside_its_slice(name, switch):
    model = create_model(name, num_classes=10, in_chans=MODEL_INPUTS[name][0]).train()
    assert_sub_network_ignores_outside_weights(model, model.resolve(switch), torch.randn(4, *MODEL_INPUTS[name]))


@pytest.mark.parametrize("name", list(MODEL_INPUTS))
def test_extraction_equals_the_fused_switch(name):
    shape = MODEL_INPUTS[name]
    model = create_model(name, num_classes=10, in_chans=shape[0])
    trained = ["[1.2]", "[1.0]", "[0.5, 0.5]", "[4x0.25]"]
    never = ["[0.5, 0.25, 0.25]", "[8x0.125]", "[0.25, 0.25]"]
    train_some_switches(model, shape, trained, never)
    x = torch.randn(3, *shape)
    for switch in trained + never:
        extracted = model.extract(switch)
        assert len(extracted.subnets) == len(parse_switch(switch))
        partials = [net(x) for net in extracted.subnets]
        with torch.no_grad():
            want = model(x, switch)
            got = extracted.fusion(partials)
        # the extracted convolutions sum in another order than the range ones: over ResNet-50's 50 layers
        # that is up to 2e-5 on an AVX2 CPU; a wrong slice or BN would differ by orders of magnitude more
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        # plain torch modules only: no range layer survives extraction
        assert not any(isinstance(m, (RangeConv2d, RangeLinear, SwitchableBatchNorm2d)) for m in extracted.modules())


def _tensor_bytes(module):
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _file_bytes(module):
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.tell()


@pytest.mark.parametrize("name", ["resnet50", "resnet_small", "mobilenet_v1_small"])
def test_sub_network_holds_about_its_share_of_the_parameters(name):
    shape = MODEL_INPUTS[name]
    model = create_model(name, num_classes=10, in_chans=shape[0])
    train_some_switches(model, shape, ["[1.0]", "[4x0.25]"], [])
    full = model.extract("[1.0]").subnets[0]
    quarter = model.extract("[4x0.25]").subnets[1]
    n_full = sum(p.numel() for p in full.parameters())
    n_quarter = sum(p.numel() for p in quarter.parameters())
    # width squared for the convolutions; BN, the stem and the classifier scale with the width only
    assert 1 / 16 <= n_quarter / n_full < 1.4 / 16
    assert _tensor_bytes(quarter) < 1.5 / 16 * _tensor_bytes(full)
    if name == "resnet50":  # large enough that the file is the tensors, not pickle's bookkeeping
        assert _file_bytes(quarter) < 0.1 * _file_bytes(model)


@pytest.mark.parametrize("name", ["mobilenet_v1_small", "resnet_small"])
def test_every_switch_runs_and_features_are_zero_padded(name):
    shape = MODEL_INPUTS[name]
    model = create_model(name, num_classes=10, in_chans=shape[0]).train()
    x = torch.randn(2, *shape)
    for switch in SWITCHES:
        out, feats = model(x, switch, return_features=True)
        assert out.shape == (2, 10)
        s = parse_switch(switch)
        n = s.channels(model.feature_base)
        assert feats.shape == (2, max(n, model.feature_base))
        assert torch.all(feats[:, n:] == 0)
        if s.total >= 1.0:
            assert feats[:, :n].abs().sum() > 0


def test_switch_is_an_argument_not_state():
    model = create_model("mobilenet_v1_small", num_classes=10)
    train_some_switches(model, (1, 28, 28), ["[1.0]", "[0.5, 0.5]"], [])
    x = torch.randn(2, 1, 28, 28)
    a1 = model(x, "[1.0]")
    b = model(x, "[0.5, 0.5]")
    a2 = model(x, switch=paradis.Switch([1.0]))
    torch.testing.assert_close(a1, a2)
    assert not torch.allclose(a1, b)


def test_state_dict_round_trip_keeps_every_switch():
    shape = MODEL_INPUTS["resnet_small"]
    model = train_some_switches(
        create_model("resnet_small", num_classes=10, in_chans=3),
        shape,
        ["[1.0]", "[4x0.25]"],
        ["[0.5, 0.25, 0.25]"],
    )
    state = model.state_dict()
    fresh = create_model("resnet_small", num_classes=10, in_chans=3)
    fresh.load_state_dict(state)
    fresh.eval()
    assert [str(s) for s in fresh.bn_switches()] == ["[1.0]", "[0.5, 0.25, 0.25]", "[4x0.25]"]
    x = torch.randn(2, *shape)
    for switch in ["[1.0]", "[4x0.25]", "[0.5, 0.25, 0.25]"]:
        torch.testing.assert_close(fresh(x, switch), model(x, switch))


@pytest.mark.parametrize("name", list_models())
def test_metadata_agrees_with_the_built_model(name):
    """What the registry states without building a model is what the model is."""
    from paradis.models import model_info

    info = model_info(name)
    model = create_model(name)
    assert model.num_stages == info.num_stages
    assert model.wide_factor == info.default_wide_factor
    assert info.input_size[0] == info.in_chans
    if info.task == "super-resolution":
        out = model(torch.rand(1, info.in_chans, 8, 8), "[1.0]")
        assert info.num_classes is None and out.shape[:2] == (1, info.in_chans)
    else:
        assert model.head.weight.shape[0] == info.num_classes
        assert model.stem.weight.shape[1] == info.in_chans


def test_super_resolution_models_need_no_num_classes_and_are_not_wide():
    model = create_model("wdsr")
    assert model.wide_factor == 1.0
    assert sum(p.numel() for p in model.parameters()) == 2_374_132  # the reference WDSR x2


def test_us_nets_rounding_reproduces_their_channel_counts():
    """US-Nets turns a width into make_divisible(C * w, 8) channels: MobileNet v1 [0.35] costs
    80.4 M multiply-adds there (76.1 M with the shared rule), and the single width closest in cost
    to ResNet-50's [0.5, 0.5] is the paper's 0.7 (0.725 with the shared rule)."""
    from paradis.engine.evaluation import matched_widths
    from paradis.methods.us import width_grid

    shared, us = create_model("mobilenet_v1"), create_model("mobilenet_v1", rounding="us-nets")
    assert round(profile(shared, "[0.35]", (3, 224, 224)).macs / 1e6, 1) == 76.1
    assert round(profile(us, "[0.35]", (3, 224, 224)).macs / 1e6, 1) == 80.4
    for w in (0.25, 0.5, 0.75, 1.0):  # the two rules agree here
        assert profile(us, f"[{w}]", (3, 224, 224)).macs == profile(shared, f"[{w}]", (3, 224, 224)).macs
    grid = width_grid(0.25, 1.0, 0.025)
    half = [parse_switch("[0.5, 0.5]")]
    assert list(matched_widths(create_model("resnet50"), half, grid, (3, 224, 224))) == [parse_switch("[0.725]")]
    us50 = create_model("resnet50", rounding="us-nets")
    assert list(matched_widths(us50, half, grid, (3, 224, 224))) == [parse_switch("[0.7]")]
    # lists of widths keep the shared rule in either model
    assert profile(us, "[0.5, 0.5]", (3, 224, 224)).macs == profile(shared, "[0.5, 0.5]", (3, 224, 224)).macs


@pytest.mark.parametrize("switch", ["[0.35]", "[0.6]", "[1.0]"])
def test_us_nets_rounded_switches_extract_and_calibrate(switch):
    model = create_model("mobilenet_v1_small", rounding="us-nets").eval()
    x = torch.randn(4, 1, 28, 28)
    calibrate_bn(model, switch, [torch.randn(8, 1, 28, 28) for _ in range(2)])
    extracted = model.extract(switch)
    torch.testing.assert_close(extracted(x), model(x, switch), atol=1e-5, rtol=1e-5)
    assert model.stem.weight.shape[0] == 19  # the allocation does not depend on the rule

import pytest
import torch

from paradis import BNStatisticsMissing, calibrate_bn, create_model, parse_switch
from paradis.layers import SwitchContext


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_calibration_changes_only_the_calibrated_switch():
    model = create_model("resnet_small", num_classes=10, in_chans=1).train()
    with torch.no_grad():
        for s in ["[1.0]", "[0.5, 0.5]", "[4x0.25]"]:
            model(torch.randn(8, 1, 28, 28), s)
    before = _snapshot(model)
    target = parse_switch("[0.5, 0.5]")
    calibrate_bn(model, target, [torch.randn(8, 1, 28, 28) * 2 + 1 for _ in range(3)])
    after = model.state_dict()
    assert set(after) == set(before)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "calibration changed nothing"
    assert all(k.endswith(f"__{target.key}") for k in changed), changed
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # mode restored


def test_calibration_is_the_exact_average_over_the_batches_and_resets_first():
    model = create_model("mobilenet_v1_small", num_classes=10).eval()
    s = parse_switch("[0.5, 0.25, 0.25]")
    batches = [torch.randn(5, 1, 28, 28) + i for i in range(4)]
    calibrate_bn(model, s, batches)
    with torch.no_grad():
        stem_out = [model.stem(x, SwitchContext(s)) for x in batches]
    want_mean = torch.stack([y.mean(dim=(0, 2, 3)) for y in stem_out]).mean(0)
    want_var = torch.stack([y.var(dim=(0, 2, 3), unbiased=True) for y in stem_out]).mean(0)
    mean, var, count = model.stem_bn.stats(s)
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(var, want_var)
    assert count.item() == 4
    assert not model.training
    # again on the same batches: the same statistics, not an accumulation of both runs
    calibrate_bn(model, s, [(x, torch.zeros(5)) for x in batches])
    torch.testing.assert_close(model.stem_bn.stats(s)[0], want_mean)


def test_a_never_trained_switch_needs_calibration_before_evaluation():
    model = create_model("mobilenet_v1_small", num_classes=10)
    with torch.no_grad():
        model.train()(torch.randn(8, 1, 28, 28), "[1.0]")
    model.eval()
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(BNStatisticsMissing, match=r"\[0.5, 0.25, 0.25\] has no BN statistics.*\[1.0\]"):
        model(x, "[0.5, 0.25, 0.25]")
    assert not model.has_bn_stats("[0.5, 0.25, 0.25]")
    calibrate_bn(model, "[0.5, 0.25, 0.25]", [torch.randn(8, 1, 28, 28)])
    assert model.has_bn_stats("[0.5, 0.25, 0.25]")
    assert model(x, "[0.5, 0.25, 0.25]").shape == (2, 10)


def test_calibration_without_batches_is_an_error_and_leaves_no_statistics():
    model = create_model("mobilenet_v1_small", num_classes=10)
    with pytest.raises(ValueError, match=r"no batches for switch \[4x0.25\]"):
        calibrate_bn(model, "[4x0.25]", [])
    assert not model.has_bn_stats("[4x0.25]")

"""The grouped fast path gives the reference (per-sub-network) results for every model."""

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from paradis import calibrate_bn, create_model
from tests.conftest import MODEL_INPUTS


class CountConvolutions(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution.default:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def _pair(name):
    # float64: deep networks in training mode amplify float32 rounding differences between two correct
    # summation orders; in double precision the two paths must agree to many digits.
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=MODEL_INPUTS[name][0]).double()
    return model, copy.deepcopy(model)


@pytest.mark.parametrize("name", list(MODEL_INPUTS))
@pytest.mark.parametrize("switch", ["[4x0.25]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]"])
def test_training_mode_outputs_and_gradients_match(name, switch):
    fast, ref = _pair(name)
    x = torch.randn(4, *MODEL_INPUTS[name], dtype=torch.float64)
    outs = []
    for model, grouped in ((fast, True), (ref, False)):
        out, feats = model(x, switch, return_features=True, grouped=grouped)
        (out.square().sum() + feats.sum()).backward()
        outs.append(out.detach())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-7, atol=1e-7)
    for (pname, a), b in zip(fast.named_parameters(), ref.parameters()):
        if a.grad is None:
            assert b.grad is None, pname
            continue
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-7, msg=pname)
    # running statistics updated identically
    for a, b in zip(fast.buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", ["mobilenet_v1_small", "resnet_small"])
def test_eval_mode_matches_after_calibration(name):
    model, _ = _pair(name)
    model.float()
    batches = [torch.randn(8, *MODEL_INPUTS[name]) for _ in range(2)]
    model.eval()
    for switch in ("[8x0.125]", "[4x0.25]", "[0.5, 0.5]"):
        calibrate_bn(model, switch, batches)
        with torch.no_grad():
            fast = model(batches[0], switch)
            ref = model(batches[0], switch, grouped=False)
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_equal_widths_take_one_grouped_call_per_layer():
    model = create_model("mobilenet_v1_small", num_classes=10)
    x = torch.randn(2, 1, 28, 28)
    calls = {}
    for switch in ("[1.0]", "[4x0.25]", "[0.5, 0.25, 0.25]"):
        for grouped in (True, False):
            with torch.no_grad(), CountConvolutions() as counter:
                model(x, switch, grouped=grouped)
            calls[switch, grouped] = counter.calls
    layers = calls["[1.0]", True]
    assert calls["[1.0]", False] == layers
    assert calls["[4x0.25]", True] == layers  # one call per layer whatever the number of sub-networks
    pointwise = len(model.blocks)  # the loop runs each pointwise convolution once per sub-network
    assert calls["[4x0.25]", False] == layers + 3 * pointwise
    assert calls["[0.5, 0.25, 0.25]", True] == calls["[0.5, 0.25, 0.25]", False] == layers + 2 * pointwise

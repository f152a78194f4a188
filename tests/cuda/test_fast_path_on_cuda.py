"""The grouped fast path (one grouped convolution per layer) against the per-sub-network loop, on CUDA."""

from __future__ import annotations

import copy

import pytest
import torch

from paradis import calibrate_bn
from tests.cuda.common import CUDA, MODELS, as_accurate, batch, build, errors, fmt, forward_backward, record

pytestmark = CUDA

GROUPED = ["[4x0.25]", "[0.5, 0.5]", "[8x0.125]"]  # equal widths: the switches the grouped path runs


@pytest.mark.parametrize("name", MODELS)
def test_grouped_equals_the_loop_on_cuda_in_float64(name, device):
    """Training mode: outputs, features, every gradient and the running statistics."""
    fast = build(name, torch.float64).to(device).train()
    loop = copy.deepcopy(fast)
    x = batch(name, 4, torch.float64).to(device)
    for switch in GROUPED:
        errs = errors(forward_backward(fast, x, switch), forward_backward(loop, x, switch, grouped=False))
        record(f"float64 grouped-vs-loop cuda {name} {switch}: {fmt(errs)}")
        assert max(errs.values()) < 1e-8, f"{name} {switch}: {fmt(errs)}"


@pytest.mark.parametrize("name", MODELS)
def test_grouped_is_as_accurate_as_the_loop_on_cuda_in_float32(name, device, exact_fp32):
    """cuDNN picks other kernels for grouped convolutions: against a float64 reference on the same
    device, the grouped path's errors must be of the loop's order (common.as_accurate)."""
    fast = build(name).to(device).train()
    loop = copy.deepcopy(fast)
    ref = copy.deepcopy(fast).double()
    x = batch(name, 8).to(device)
    for switch in GROUPED:
        truth = forward_backward(ref, x.double(), switch, grouped=False)
        e_fast = errors(forward_backward(fast, x, switch), truth)
        e_loop = errors(forward_backward(loop, x, switch, grouped=False), truth)
        record(f"float32 grouped-vs-loop cuda {name} {switch}: grouped {fmt(e_fast)} | loop {fmt(e_loop)}")
        bad = as_accurate(e_fast, e_loop)
        assert not bad, f"{name} {switch}: {bad}; grouped {fmt(e_fast)}; loop {fmt(e_loop)}"


@pytest.mark.parametrize("name", MODELS)
def test_grouped_equals_the_loop_under_bf16_autocast(name, device):
    model = build(name).to(device).train()
    x = batch(name, 8).to(device)
    for switch in GROUPED:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            fast = model(x, switch).float()
            loop = model(x, switch, grouped=False).float()
        rel = ((fast - loop).norm() / loop.norm()).item()
        record(f"bf16 grouped-vs-loop cuda {name} {switch}: output rel {rel:.1e}")
        assert rel < 0.05, f"{name} {switch}: {rel:.3f}"


@pytest.mark.parametrize("name", ["mobilenet_v1_small", "resnet_small", "resnet50"])
def test_eval_mode_grouped_equals_the_loop_after_calibration_on_cuda(name, device, exact_fp32):
    model = build(name).to(device).eval()
    batches = [batch(name, 16, seed=10 + i) for i in range(2)]
    x = batch(name, 8).to(device)
    for switch in GROUPED:
        calibrate_bn(model, switch, batches, device=device)
        with torch.no_grad():
            fast, loop = model(x, switch), model(x, switch, grouped=False)
        rel = ((fast - loop).norm() / loop.norm()).item()
        record(f"eval grouped-vs-loop cuda {name} {switch}: output rel {rel:.1e}")
        assert rel < 1e-4, f"{name} {switch}: {rel:.2e}"

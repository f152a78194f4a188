"""Every model's forward and backward pass on CUDA against the CPU, and bf16 autocast against fp32."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from tests.cuda.common import (
    CLASSIFIERS,
    CUDA,
    MODELS,
    SUPER_RESOLUTION,
    SWITCHES,
    as_accurate,
    batch,
    build,
    errors,
    finite,
    fmt,
    forward_backward,
    input_size,
    record,
)

pytestmark = CUDA


@pytest.mark.parametrize("name", MODELS)
def test_float64_forward_and_backward_on_cuda_equal_the_cpu(name, device):
    """In double precision rounding cannot hide a wrong kernel: outputs, features, every gradient and
    the BN running statistics agree to many digits, for a full, a grouped and an unequal switch."""
    cpu = build(name, torch.float64).train()
    gpu = copy.deepcopy(cpu).to(device)
    x = batch(name, 4, torch.float64)
    for switch in SWITCHES:
        errs = errors(forward_backward(gpu, x.to(device), switch), forward_backward(cpu, x, switch))
        record(f"float64 cuda-vs-cpu {name} {switch}: {fmt(errs)}")
        assert max(errs.values()) < 1e-8, f"{name} {switch}: {fmt(errs)}"


@pytest.mark.parametrize("name", MODELS)
def test_float32_on_cuda_is_as_accurate_as_on_the_cpu(name, device, exact_fp32):
    """In float32 two correct devices differ by rounding, which deep networks in training mode amplify:
    so each is measured against a float64 reference, and CUDA's errors must be of the CPU's order
    (common.as_accurate), its output error at most 1e-3."""
    cpu = build(name).train()
    ref = copy.deepcopy(cpu).double()
    gpu = copy.deepcopy(cpu).to(device)
    x = batch(name, 8)
    for switch in SWITCHES:
        truth = forward_backward(ref, x.double(), switch)
        on_cpu = errors(forward_backward(cpu, x, switch), truth)
        on_gpu = errors(forward_backward(gpu, x.to(device), switch), truth)
        record(f"float32 {name} {switch}: cuda {fmt(on_gpu)} | cpu {fmt(on_cpu)}")
        bad = as_accurate(on_gpu, on_cpu)
        assert not bad, f"{name} {switch}: {bad}; cuda {fmt(on_gpu)}; cpu {fmt(on_cpu)}"
        assert on_gpu["output"] < 1e-3, f"{name} {switch}: {fmt(on_gpu)}"


def _loss(name: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    out = out.float()
    return F.l1_loss(out, target) if name in SUPER_RESOLUTION else F.cross_entropy(out, target)


def _target(name: str, out_shape: torch.Size, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    if name in SUPER_RESOLUTION:  # a high-resolution image of the output's size
        return torch.rand(out_shape, generator=g).to(device)
    return torch.randint(0, out_shape[1], (out_shape[0],), generator=g).to(device)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast_losses_are_within_a_few_percent_of_fp32(name, device, exact_fp32):
    """Under torch.autocast(bfloat16) (precision: bf16 of a run) the loss of the same weights and batch
    is within 5 % of float32's, and the gradient points the same way (cosine > 0.8)."""
    model = build(name).to(device).train()
    x = batch(name, 16).to(device)
    for switch in SWITCHES:
        losses, grads = {}, {}
        for bf16 in (False, True):
            model.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(x, switch)
            target = _target(name, out.shape, device)
            loss = _loss(name, out, target)
            loss.backward()
            losses[bf16] = loss.item()
            grads[bf16] = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
        rel = abs(losses[True] - losses[False]) / abs(losses[False])
        cos = F.cosine_similarity(grads[True], grads[False], dim=0).item()
        record(
            f"bf16 {name} {switch}: loss fp32 {losses[False]:.5f} bf16 {losses[True]:.5f} rel {rel:.2%} "
            f"grad cos {cos:.4f}"
        )
        assert finite(losses[True]) and rel < 0.05, f"{name} {switch}: fp32 {losses[False]}, bf16 {losses[True]}"
        assert cos > 0.8, f"{name} {switch}: gradient cosine {cos:.3f}"


def _prototype_batches(name: str, steps: int, n: int = 32):
    """Learnable classification data: a random prototype per class plus noise."""
    g = torch.Generator().manual_seed(4)
    protos = torch.randn(10, *input_size(name), generator=g)
    for _ in range(steps):
        y = torch.randint(0, 10, (n,), generator=g)
        yield protos[y] + 0.5 * torch.randn(n, *input_size(name), generator=g), y


@pytest.mark.parametrize("name", ["mobilenet_v1_small", "resnet_small"])
def test_bf16_stays_within_a_few_percent_of_fp32_along_a_training_run(name, device, exact_fp32):
    """A ParaDiS-like training in float32 (three switches, gradients summed, one SGD step): at every
    fifth step the bf16 loss of the same weights and batch is within 5 % of the float32 loss, and the
    same training run entirely under bf16 autocast learns too (its loss falls below half its start)."""
    assert name in CLASSIFIERS
    switches = ["[1.0]", "[0.5, 0.5]", "[4x0.25]"]
    curves = {}
    for bf16_run in (False, True):
        model = build(name).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        curve = []
        for step, (x, y) in enumerate(_prototype_batches(name, 30)):
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for switch in switches:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_run):
                    loss = F.cross_entropy(model(x, switch).float(), y)
                loss.backward()
                total += loss.item()
                if not bf16_run and (step % 5 == 0 or step == 29):
                    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
                        low = F.cross_entropy(model(x, switch).float(), y).item()
                    rel = abs(low - loss.item()) / loss.item()
                    record(
                        f"bf16 along fp32 training {name} step {step} {switch}: {loss.item():.4f} {low:.4f} {rel:.2%}"
                    )
                    assert rel < 0.05, f"{name} step {step} {switch}: fp32 {loss.item():.4f}, bf16 {low:.4f}"
            opt.step()
            curve.append(total / len(switches))
        curves[bf16_run] = curve
    record(
        f"training {name} loss start/end: fp32 {curves[False][0]:.3f}/{curves[False][-1]:.3f}, "
        f"bf16 {curves[True][0]:.3f}/{curves[True][-1]:.3f}"
    )
    assert all(finite(v) for v in curves[True])
    assert curves[True][-1] < 0.5 * curves[True][0], f"bf16 run did not learn: {curves[True][::5]}"

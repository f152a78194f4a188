"""BN calibration on CUDA: the statistics and eval outputs the CPU gets, from any kind of batches."""

from __future__ import annotations

import copy

import pytest
import torch

from paradis import calibrate_bn
from tests.cuda.common import CLASSIFIERS, CUDA, batch, build, record

pytestmark = CUDA

CALIBRATED = ["[1.0]", "[0.5, 0.5]", "[4x0.25]", "[0.5, 0.25, 0.25]"]


def _stats(model) -> torch.Tensor:
    return torch.cat([b.detach().double().cpu().flatten() for _, b in model.named_buffers() if b.is_floating_point()])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_calibration_on_cuda_equals_the_cpu(name, device, exact_fp32):
    cpu = build(name).eval()
    gpu = copy.deepcopy(cpu).to(device)
    batches = [batch(name, 16, seed=10 + i) for i in range(3)]  # on the CPU: calibrate_bn moves them
    for switch in CALIBRATED:
        assert not gpu.has_bn_stats(switch)
        assert calibrate_bn(cpu, switch, batches) == 3
        assert calibrate_bn(gpu, switch, batches, device=device) == 3
        assert gpu.has_bn_stats(switch)
    stats = _rel(_stats(gpu), _stats(cpu))
    x = batch(name, 8)
    with torch.no_grad():
        outs = {s: _rel(gpu(x.to(device), s), cpu(x, s)) for s in CALIBRATED}
    record(
        f"bn calibration {name}: statistics rel {stats:.1e}; eval outputs rel "
        + " ".join(f"{s}={e:.1e}" for s, e in outs.items())
    )
    assert stats < 1e-4, stats
    assert max(outs.values()) < 1e-3, outs


def test_calibration_on_cuda_from_a_loader_a_channels_last_model_and_one_switch_only(device, exact_fp32):
    """(x, y) batches from a pinned DataLoader give the statistics of plain tensors; a channels-last
    model (channels_last: true) the same; recalibrating one switch leaves the others untouched."""
    name = "mobilenet_v1_small"
    ref = build(name).to(device).eval()
    images = torch.cat([batch(name, 16, seed=10 + i) for i in range(3)])
    labels = torch.randint(0, 10, (len(images),))
    calibrate_bn(ref, "[0.5, 0.5]", list(images.split(16)), device=device)

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=16, pin_memory=device.type == "cuda"
    )
    from_loader = build(name).to(device).eval()
    assert calibrate_bn(from_loader, "[0.5, 0.5]", loader, device=device) == 3
    assert _rel(_stats(from_loader), _stats(ref)) < 1e-6

    nhwc = build(name).to(device).to(memory_format=torch.channels_last).eval()
    calibrate_bn(
        nhwc, "[0.5, 0.5]", [b.contiguous(memory_format=torch.channels_last) for b in images.split(16)], device=device
    )
    assert _rel(_stats(nhwc), _stats(ref)) < 1e-4

    x = batch(name, 8).to(device)
    with torch.no_grad():
        before = ref(x, "[0.5, 0.5]").clone()
        calibrate_bn(ref, "[4x0.25]", [batch(name, 16, seed=20)], device=device)
        assert ref.has_bn_stats("[4x0.25]")
        assert torch.equal(ref(x, "[0.5, 0.5]"), before)

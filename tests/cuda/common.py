"""What the GPU checks share: the marks, the models and their inputs, one forward and backward pass, and
how two passes are compared."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import paradis

ON_CPU = os.environ.get("PARADIS_CUDA_TESTS_ON_CPU") == "1"
ROOT = Path(__file__).resolve().parents[2]

requires_cuda = pytest.mark.skipif(
    not (ON_CPU or torch.cuda.is_available()),
    reason="CUDA is not available (these GPU checks run on a GPU machine: benchmarks/gpu_check.sh)",
)
CUDA = [pytest.mark.cuda, requires_cuda]  # every module here: pytestmark = CUDA

MODELS = paradis.list_models()
SUPER_RESOLUTION = ("wdsr", "wdsr_small")  # image-to-image: no classes, no BN
CLASSIFIERS = [m for m in MODELS if m not in SUPER_RESOLUTION]
# one full-width switch, one the grouped path runs, one with unequal widths (the loop)
SWITCHES = ["[1.0]", "[4x0.25]", "[0.5, 0.25, 0.25]"]
_INPUTS = {
    "mobilenet_v1_small": (1, 28, 28),
    "resnet_small": (3, 32, 32),
    "wdsr": (3, 16, 16),
    "wdsr_small": (3, 16, 16),
}


def input_size(name: str) -> tuple[int, int, int]:
    """Small inputs: the 224x224 architectures at 64x64 (as in tests/conftest.py)."""
    return _INPUTS.get(name, (3, 64, 64))


def build(name: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> paradis.models.ParaDiSModel:
    torch.manual_seed(seed)
    if name in SUPER_RESOLUTION:
        try:
            model = paradis.create_model(name)
        except TypeError:  # the registry before issue 17 asked every model for num_classes
            model = paradis.create_model(name, num_classes=3)
    else:
        model = paradis.create_model(name, num_classes=10, in_chans=input_size(name)[0])
    return model.to(dtype)


def batch(name: str, n: int, dtype: torch.dtype = torch.float32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *input_size(name), generator=g).to(dtype)


def forward_backward(model, x: torch.Tensor, switch: str, *, grouped: bool = True) -> dict:
    """Output, features, every gradient and the floating-point buffers after one training-mode pass
    with a loss that weighs every output and feature by a fixed random factor (no cancellation)."""
    model.zero_grad(set_to_none=True)
    out, feats = model(x, switch, return_features=True, grouped=grouped)
    g = torch.Generator().manual_seed(2)
    w_out = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out)
    w_feat = torch.randn(feats.shape, generator=g, dtype=torch.float64).to(feats)
    ((out * w_out).mean() + (feats * w_feat).mean()).backward()
    return {
        "output": out.detach(),
        "features": feats.detach(),
        "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers() if b.is_floating_point()},
    }


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _cat(tensors: dict) -> torch.Tensor:
    return torch.cat([t.detach().double().cpu().flatten() for t in tensors.values()]) if tensors else torch.zeros(1)


def errors(got: dict, want: dict) -> dict[str, float]:
    """Relative errors (norm of the difference over the norm of ``want``) of output, features, all
    gradients together, the worst single gradient (its error over the norm of all gradients: a tensor
    whose gradient nearly cancels has a large error of its own and no weight) and the buffers."""
    assert set(got["grads"]) == set(want["grads"]), "not the same parameters received gradients"
    assert set(got["buffers"]) == set(want["buffers"]), "not the same buffers"
    all_want = _cat(want["grads"]).norm().clamp_min(1e-300)
    worst = max(
        (
            ((got["grads"][k].double().cpu() - w.double().cpu()).norm() / all_want).item()
            for k, w in want["grads"].items()
        ),
        default=0.0,
    )
    return {
        "output": _rel(got["output"], want["output"]),
        "features": _rel(got["features"], want["features"]),
        "grads": _rel(_cat(got["grads"]), _cat(want["grads"])),
        "worst_grad": worst,
        "buffers": _rel(_cat(got["buffers"]), _cat(want["buffers"])) if want["buffers"] else 0.0,
    }


def as_accurate(errs: dict[str, float], ref: dict[str, float]) -> list[str]:
    """The float32 rule: ``errs`` (say CUDA's, against a float64 reference) may be at most 10 times
    ``ref`` (the CPU's, against the same reference) plus 1e-4 for outputs, features and statistics; for
    gradients, where training-mode BN amplifies rounding (ResNet-50's float32 gradients are only about
    2e-2 from float64 on the CPU, and one path can be 1e-3 off where another is 1e-6), at most 10 times
    ``ref`` or 1e-2, whichever is larger. Returns what broke the rule."""
    bad = []
    for key, err in errs.items():
        limit = max(10 * ref[key], 1e-2) if key in ("grads", "worst_grad") else 10 * ref[key] + 1e-4
        if not err <= limit:
            bad.append(f"{key} {err:.1e} > {limit:.1e}")
    return bad


def fmt(errs: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.1e}" for k, v in errs.items())


def record(line: str) -> None:
    """One measured figure for the GPU check's summary (``GPU_CHECK_METRICS``); a no-op elsewhere."""
    path = os.environ.get("GPU_CHECK_METRICS")
    if path:
        with open(path, "a") as f:
            f.write("    measured: " + line.rstrip() + "\n")


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)

"""GPU checks (issue 18). Every test in this folder is marked ``cuda`` and skipped where
``torch.cuda.is_available()`` is false; nothing here imports Ray or starts a process before that skip.

``benchmarks/gpu_check.sh`` runs them on a GPU machine. ``PARADIS_CUDA_TESTS_ON_CPU=1`` runs them on the
CPU instead: a rehearsal of the code paths (fixtures, APIs, subprocesses, Ray) before the one GPU call,
not a check of CUDA (each CUDA-against-CPU comparison then compares the CPU with itself, and nccl
becomes gloo).

``GPU_CHECK_METRICS=FILE`` makes the tests append the figures they measured (errors, losses) to FILE,
one line each, so that a passing run still says how close CUDA came; ``GPU_CHECK_RESULTS=FILE`` appends
each test's outcome as soon as it is known (a run stopped by a time limit keeps what it had).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch

from tests.cuda.common import ON_CPU, ROOT


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cpu") if ON_CPU else torch.device("cuda", torch.cuda.current_device())


@pytest.fixture
def exact_fp32():
    """Plain IEEE float32 in cuDNN convolutions and cuBLAS products: without it PyTorch may run float32
    convolutions on TF32 tensor cores (10-bit mantissa), which no float32 tolerance would cover."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    new_api = hasattr(conv, "fp32_precision") and hasattr(torch.backends.cuda.matmul, "fp32_precision")
    if new_api:  # torch >= 2.9: never mix it with the legacy allow_tf32 flags (torch raises)
        saved = (torch.backends.cuda.matmul.fp32_precision, conv.fp32_precision)
        torch.backends.cuda.matmul.fp32_precision, conv.fp32_precision = "ieee", "ieee"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.fp32_precision, conv.fp32_precision = saved
    else:
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="session")
def ray_gpu_cluster():
    """A local Ray with the machine's GPUs, for the Ray Train and device-pool tests of this folder."""
    ray = pytest.importorskip("ray", reason="ray is not installed (benchmarks/gpu_wheels.sh carries it)")
    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    gpus = 0 if ON_CPU else torch.cuda.device_count()
    saved = os.environ.get("PYTHONPATH")
    # the workers this ray.init starts import paradis and orchestration from this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([saved] if saved else [])])
    ray.shutdown()
    try:
        ray.init(
            address="local",
            num_cpus=max(4, min(8, os.cpu_count() or 4)),
            num_gpus=gpus,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=tmp,
        )
        yield gpus
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def pytest_runtest_logreport(report):
    path = os.environ.get("GPU_CHECK_RESULTS")
    if not path or not report.nodeid.startswith("tests/cuda/"):
        return
    if not (report.when == "call" or report.failed or (report.when == "setup" and report.skipped)):
        return
    outcome = "SKIPPED" if report.skipped else ("ERROR" if report.when != "call" else report.outcome.upper())
    why = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        why = str(report.longrepr[2])
    elif report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        why = crash.message if crash is not None else str(report.longrepr).splitlines()[-1]
    why = " ".join(why.split())[:400]
    with open(path, "a") as f:
        f.write(f"{outcome:<8} {report.nodeid} ({report.duration:.1f} s){': ' + why if why else ''}\n")

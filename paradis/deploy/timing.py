"""Wall-clock latency of a call: the median after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def measure_latency(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 10) -> float:
    """Median wall-clock seconds of ``fn()`` after ``warmup`` calls (CUDA is synchronized)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)

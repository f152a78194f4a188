"""Wall-clock latency of a call: every repeat after a warm-up, and its summary (median, p95)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def measure_times(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 10) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` calls of ``fn()`` after ``warmup`` calls (CUDA is
    synchronized after each, so the time is the work's, not its launch's)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats {repeats} must be >= 1 and warmup {warmup} >= 0")
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
    return times


def measure_latency(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 10) -> float:
    """Median wall-clock seconds of ``fn()`` after ``warmup`` calls (CUDA is synchronized)."""
    return statistics.median(measure_times(fn, warmup=warmup, repeats=repeats))


def percentile(times: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``times``, linearly interpolated between order statistics."""
    ordered = sorted(times)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(times: Sequence[float]) -> dict[str, float | int]:
    """``p50_s``, ``p95_s``, ``mean_s``, ``min_s``, ``max_s`` (seconds) and ``repeats`` of measured times."""
    return {
        "p50_s": percentile(times, 50),
        "p95_s": percentile(times, 95),
        "mean_s": statistics.fmean(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
    }

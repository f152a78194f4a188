"""Timing helpers shared by the benchmarks: warm-up, medians, CUDA synchronization, a result table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class Row:
    """One comparison: the project's time, the anchor's time and their ratio (lower is better)."""

    benchmark: str
    case: str
    project: str
    project_s: float
    anchor: str
    anchor_s: float
    goal: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.project_s / self.anchor_s

    def line(self) -> str:
        verdict = "met" if self.goal is not None and self.ratio <= self.goal else "MISSED"
        goal = "" if self.goal is None else f"  (goal <= {self.goal:.3g}: {verdict})"
        return (
            f"{self.benchmark:<18} {self.case:<34} {self.project:<22} {fmt_s(self.project_s):>10}   "
            f"{self.anchor:<24} {fmt_s(self.anchor_s):>10}   ratio {self.ratio:6.3f}{goal}"
        )


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, *, warmup: int = 3, repeats: int = 10) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(
    fns: dict[str, Callable[[], object]], device: torch.device, *, warmup: int = 3, repeats: int = 10
) -> dict[str, float]:
    """Median times of several functions measured in alternation, so that a change in machine load
    during the run affects all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def machine() -> str:
    threads = torch.get_num_threads()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()} {os.cpu_count()} cores ({threads} torch threads), {gpu}, torch {torch.__version__}"


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and cases: checks that it runs")
    parser.add_argument("--json", metavar="FILE", help="also write the rows to this JSON file")
    parser.add_argument("--bf16", action="store_true", help="run under bfloat16 autocast (CUDA)")


def report(rows: list[Row], args: argparse.Namespace, title: str) -> None:
    print(f"\n== {title} — {machine()}, {time.strftime('%Y-%m-%d')}")
    for row in rows:
        print(row.line())
    if args.json:
        existing = []
        if os.path.exists(args.json):
            with open(args.json) as f:
                existing = json.load(f)
        payload = [{**asdict(r), "ratio": r.ratio} for r in rows]
        with open(args.json, "w") as f:
            json.dump(existing + payload, f, indent=1)

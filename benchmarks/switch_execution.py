"""Forward + backward of a switch of k equal sub-networks: the grouped fast path against the
per-sub-network loop, against the k extracted sub-networks run one after another as dense networks,
and against the physical limit measured in the same run.

The limit is the ``[1.0]`` time with each convolution's time (forward and backward, from
``torch.profiler``) scaled by its multiply-add ratio ``[k x 1/k] / [1.0]``; memory-bound operations
(depthwise convolution, BN, ReLU, additions, pooling) keep their full time, since a ``[k x 1/k]`` switch
moves as much activation data as ``[1.0]``.

    python -m benchmarks.switch_execution [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import Row, add_common_args, interleaved_medians, report, synchronize
from paradis import create_model, parse_switch
from paradis.layers import RangeConv2d
from paradis.models.base import ParaDiSModel
from paradis.switch import Switch

MODELS = {"mobilenet_v1_small": (1, 28, 28), "resnet_small": (3, 32, 32)}
FULL = parse_switch("[1.0]")


def equal_switch(k: int) -> Switch:
    return parse_switch(f"[{k}x{Fraction(1, k).numerator / Fraction(1, k).denominator:g}]")


def conv_ratios(model: ParaDiSModel, switch: Switch) -> dict[tuple[int, ...], float]:
    """Weight shape of each (non-depthwise) convolution at ``[1.0]`` -> its multiply-add ratio."""
    ratios: dict[tuple[int, ...], float] = {}
    for name, layer in model.range_layers():
        if not isinstance(layer, RangeConv2d) or layer.depthwise:
            continue
        outs_full, outs = layer.out_ranges(FULL), layer.out_ranges(switch)
        n_out = outs_full[0][1]
        if layer.in_base is None:
            n_in = layer.weight.shape[1]
            ratio = sum(b - a for a, b in outs) / n_out
        else:
            n_in = layer.in_ranges(FULL)[0][1]
            ratio = sum((b - a) * (d - c) for (a, b), (c, d) in zip(outs, layer.in_ranges(switch))) / (n_out * n_in)
        key = (n_out, n_in, layer.kernel_size, layer.kernel_size)
        if ratios.get(key, ratio) != ratio:
            raise ValueError(f"layers with weight shape {key} have different ratios under {switch} ({name})")
        ratios[key] = ratio
    return ratios


def limit_time(step_full, full_time: float, ratios: dict, device: torch.device, steps: int = 3) -> tuple[float, float]:
    """``(limit, share)``: the ``[1.0]`` time less what the convolutions would save at their
    multiply-add ratio; ``share`` is the convolutions' share of the profiled time."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    step_full()
    synchronize(device)
    with profile(activities=activities, record_shapes=True) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step_full()
        synchronize(device)
        profiled_wall = (time.perf_counter() - t0) / steps
    on_gpu = device.type == "cuda"
    saved = conv = 0.0
    for ev in prof.key_averages(group_by_input_shape=True):
        if ev.key == "aten::convolution":
            weight = ev.input_shapes[1]
        elif ev.key == "aten::convolution_backward":
            weight = ev.input_shapes[2]
        else:
            continue
        t = (ev.device_time_total if on_gpu else ev.cpu_time_total) / 1e6 / steps
        conv += t
        ratio = ratios.get(tuple(weight), 1.0)  # depthwise and unknown shapes keep their full time
        saved += t * (1.0 - ratio)
    # profiler times are inflated by its own overhead: scale to the unprofiled wall time
    scale = full_time / profiled_wall
    return full_time - saved * scale, conv / profiled_wall


def measure_model(name: str, size: tuple[int, ...], ks, batch: int, repeats: int, args) -> list[Row]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=size[0]).to(device).train()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, *size, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step(switch, grouped=True):
        def fn():
            model.zero_grad(set_to_none=True)
            with autocast:
                out = model(x, switch, grouped=grouped)
            out.float().sum().backward()

        return fn

    def sequential(extracted):
        def fn():
            extracted.zero_grad(set_to_none=True)
            for net in extracted.subnets:  # one dense network after another, each its own backward
                with autocast:
                    out = net(x)
                out.float().sum().backward()

        return fn

    rows = []
    layout = " NHWC" if args.channels_last else ""
    for k in ks:
        s = equal_switch(k)
        extracted = model.extract(s, missing_stats_ok=True).to(device).train()
        times = interleaved_medians(
            {
                "full": step(FULL),
                "grouped": step(s),
                "loop": step(s, grouped=False),
                "sequential": sequential(extracted),
            },
            device,
            repeats=repeats,
        )
        limit, conv_share = limit_time(step(FULL), times["full"], conv_ratios(model, s), device)
        case = f"{name} b{batch}{layout} {s}"
        extra = {"full_s": times["full"], "conv_share_of_full": conv_share}
        for label, key in (
            ("grouped", "grouped"),
            ("per-sub-network loop", "loop"),
            ("extracted one by one", "sequential"),
        ):
            goal = 1.3 if key == "grouped" else None
            rows.append(Row("switch_execution", case, label, times[key], "limit", limit, goal, extra))
        rows.append(Row("switch_execution", case, "grouped", times["grouped"], "[1.0]", times["full"]))
    return rows


def run(args: argparse.Namespace) -> list[Row]:
    ks = (4,) if args.quick else (2, 4, 8)
    batch = 8 if args.quick else args.batch
    repeats = 2 if args.quick else args.repeats
    rows = []
    for name, size in MODELS.items():
        rows += measure_model(name, size, ks, batch, repeats, args)
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--channels-last", action="store_true", help="NHWC model and input")
    args = parser.parse_args(argv)
    rows = run(args)
    report(rows, args, "switch execution (forward + backward, training mode)")
    return rows


if __name__ == "__main__":
    main()

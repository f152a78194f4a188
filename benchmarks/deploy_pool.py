"""Latency and throughput of switches on a Ray device pool (issue 8).

    python -m benchmarks.deploy_pool [--model mobilenet_v1_small] [--batch 64] [--threads 1] [--device cuda]

Runs, with one actor per device (``--threads`` CPU threads each, or a GPU each with ``--device cuda``):

- ``[1.0]`` on one actor (the anchor),
- ``[0.5, 0.5]`` on 2 actors and ``[4x0.25]`` on 4 actors (ParaDiS),
- the US / slimmable model of the same multiply-adds per device: the single width whose multiply-adds
  are closest to the busiest device of each ParaDiS switch, on one actor (a US network at width w is a
  plain width-w network: the same layers, and so the same time, as this model's ``[w]``),

and, for reference, each configuration's busiest sub-network alone in this process, before Ray starts:
what the pool's latency would be with a free core per actor and no messaging.

Latency: the median wall-clock time of one batch through the pool (input sent, sub-networks run in
parallel, partial outputs fused) after a warm-up; the configurations take turns batch by batch, so that
other load on the machine falls on all of them alike. Throughput: images per second over the timed
batches, one batch at a time. The weights are random with BN calibrated on random data: time does not depend on
them. Every pooled output is checked against the in-process ``model(x, switch)``. Goal: ``[0.5, 0.5]`` on
2 actors at most 0.6 times the latency of ``[1.0]`` on one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Row, add_common_args, report
from orchestration.deploy import DevicePool
from paradis import calibrate_bn, create_model, profile
from paradis.deploy import TrainedModel
from paradis.engine.evaluation import closest_in_cost
from paradis.switch import parse_switch

INPUTS = {"mobilenet_v1_small": (1, 28, 28), "resnet_small": (3, 32, 32), "mobilenet_v1": (3, 224, 224)}
GOAL = 0.6


def interleaved(calls: dict[str, Callable[[], object]], warmup: int, iters: int) -> dict[str, list[float]]:
    """Seconds of each call over ``iters`` rounds, one call of each configuration per round, so that a
    change in the machine's load (other processes) falls on every configuration alike."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(iters):
        for key, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mobilenet_v1_small", choices=sorted(INPUTS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="CPU threads per actor")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    add_common_args(p)  # --device cuda: one GPU per actor (4 GPUs); --quick; --json FILE
    args = p.parse_args(argv)
    args.gpu = args.device == "cuda"
    if args.quick:
        args.warmup, args.iters = 2, 5
    if args.bf16:
        print("deploy_pool: error: --bf16 is not supported by the device pool", file=sys.stderr)
        return 2

    import ray

    if args.gpu and torch.cuda.device_count() < 4:
        print(
            f"deploy_pool: error: --device cuda needs 4 GPUs (one per actor); found {torch.cuda.device_count()}",
            file=sys.stderr,
        )
        return 2
    torch.manual_seed(0)
    size = INPUTS[args.model]
    model = create_model(args.model, num_classes=10, in_chans=size[0])
    paradis_switches = ["[1.0]", "[0.5, 0.5]", "[4x0.25]"]
    # the US / slimmable baseline: on its grid of widths, the one closest in MACs to each ParaDiS device
    grid = [f"[{w / 20:g}]" for w in range(5, 21)]
    grid_macs = {w: profile(model, w, size).macs for w in grid}
    device_macs = {s: profile(model, s, size).max_device_macs for s in paradis_switches[1:]}
    us = closest_in_cost(device_macs, grid_macs)
    batches = [torch.randn(32, *size) for _ in range(2)]
    for s in {*paradis_switches, *us.values()}:
        calibrate_bn(model, s, batches)
    trained = TrainedModel.of(model.eval(), args.model, size)
    x = torch.randn(args.batch, *size)

    torch.set_num_threads(args.threads)
    # each configuration's busiest sub-network alone in this process, in the layout the actors use: the
    # latency a pool would have with free cores and no messaging
    xc = x.contiguous(memory_format=torch.channels_last)
    nets = {
        sw: model.extract(sw).subnets[0].to(memory_format=torch.channels_last)
        for sw in [*paradis_switches, *us.values()]
    }
    with torch.inference_mode():
        alone = interleaved({sw: (lambda net=net: net(xc)) for sw, net in nets.items()}, args.warmup, args.iters)

    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(
        address="local",
        num_cpus=4 * args.threads,
        num_gpus=4 if args.gpu else 0,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=tmp,
    )
    rows = []
    try:
        pool = DevicePool(4, threads=args.threads, gpus_per_device=1.0 if args.gpu else 0.0)
        pool.load_full(trained, "[1.0]")
        plan = [("[1.0]", "ParaDiS [1.0] (anchor)")]
        plan += [(s, f"ParaDiS {s}") for s in paradis_switches[1:]]
        plan += [(w, f"US/slimmable {w} (per-device MACs of {s})") for s, w in us.items()]
        diffs = {}
        for s, _ in plan:
            pool.set_switch(s)
            with torch.no_grad():
                diffs[s] = (pool(x) - model(x, s)).abs().max().item()

        def through_pool(s: str):
            def call():
                pool.set_switch(s)  # nothing is sent: every actor holds the full model
                return pool(x)

            return call

        times = interleaved({s: through_pool(s) for s, _ in plan}, args.warmup, args.iters)
        for s, name in plan:
            prof = profile(model, s, size)
            lat, rate = statistics.median(times[s]), args.batch * len(times[s]) / sum(times[s])
            rows.append(
                (name, len(parse_switch(s)), prof.max_device_macs, lat, rate, diffs[s], statistics.median(alone[s]))
            )
        loads = sum(i["loads"] for i in pool.info().values())
        pool.shutdown()
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    dev = "GPU" if args.gpu else f"{args.threads} CPU thread(s)"
    print(f"{args.model}, batch {args.batch}, one actor per device with {dev}; {os.cpu_count()} CPUs on this machine")
    print(
        f"median of {args.iters} rounds (one batch of each configuration per round) after {args.warmup} warm-up "
        f"batches each; weight loads during the run: {loads} (the full model once per actor)\n"
    )
    print(
        "| configuration | actors | MMACs per device | latency ms | images/s | busiest sub-network alone, "
        "in process, ms | max abs diff to in-process |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, macs, lat, rate, diff, alone in rows:
        print(f"| {name} | {n} | {macs / 1e6:.2f} | {1e3 * lat:.2f} | {rate:.0f} | {1e3 * alone:.2f} | {diff:.1e} |")
    project, anchor = rows[1][3], rows[0][3]
    print(f"\nproject time: {1e3 * project:.2f} ms ([0.5, 0.5] on 2 actors)")
    print(f"anchor time: {1e3 * anchor:.2f} ms ([1.0] on 1 actor)")
    ratio = project / anchor
    print(f"ratio: {ratio:.3f} (goal <= {GOAL}: {'met' if ratio <= GOAL else 'not met'})")
    case = f"{args.model} batch {args.batch}, {dev} per actor"
    extra = {"images_per_s": {r[0]: r[4] for r in rows}, "latency_s": {r[0]: r[3] for r in rows}}
    report(
        [
            Row("deploy_pool", case, "[0.5, 0.5] on 2 actors", project, "[1.0] on 1 actor", anchor, GOAL, extra),
            Row("deploy_pool", case, "[4x0.25] on 4 actors", rows[2][3], "[1.0] on 1 actor", anchor),
            Row("deploy_pool", case, "[0.5, 0.5] on 2 actors", project, f"US {rows[3][0].split()[1]} on 1", rows[3][3]),
        ],
        args,
        "Ray device pool: a switch's sub-networks on parallel actors",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

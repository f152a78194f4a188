"""A whole ParaDiS training step (Wide IPKD: the wide model, [1.0] and the switch list) against the sum
of its switches run as dense networks: each switch's extracted sub-networks, forward and backward on
the labels, and one optimizer step over all of them.

    python -m benchmarks.training_step [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
from functools import partial

import torch
import torch.nn.functional as F

from benchmarks.common import Row, add_common_args, interleaved_medians, report
from paradis import create_model
from paradis.config import TrainingConfig
from paradis.methods import make_planner
from paradis.methods.step import train_step

MODELS = {"mobilenet_v1_small": (1, 28, 28), "resnet_small": (3, 32, 32)}


def measure_model(name: str, size: tuple[int, ...], batch: int, repeats: int, args) -> list[Row]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = create_model(name, num_classes=10, in_chans=size[0]).to(device, memory_format=layout).train()
    cfg = TrainingConfig(method="paradis", switches=["[1.0]", "[0.5, 0.5]", "[4x0.25]"])
    plan = make_planner(cfg).next_plan()
    x = torch.randn(batch, *size, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else None
    dense = [model.extract(s, missing_stats_ok=True).to(device, memory_format=layout).train() for s in plan.switches]
    dense_opt = torch.optim.SGD([p for net in dense for p in net.parameters()], lr=1e-3, momentum=0.9)
    reference = partial(model, grouped=False)  # every layer's sub-networks one after another

    def dense_step():
        dense_opt.zero_grad(set_to_none=True)
        for net in dense:
            for sub in net.subnets:
                with autocast or contextlib.nullcontext():
                    loss = F.cross_entropy(sub(x), y)
                loss.backward()
        dense_opt.step()

    times = interleaved_medians(
        {
            "paradis": lambda: train_step(model, optimizer, x, y, plan, autocast=autocast),
            "loop": lambda: train_step(reference, optimizer, x, y, plan, autocast=autocast),
            "dense": dense_step,
        },
        device,
        repeats=repeats,
    )
    case = f"{name} b{batch} " + " ".join(str(s) for s in plan.switches) + (" NHWC" if args.channels_last else "")
    return [
        Row("training_step", case, "ParaDiS step (grouped)", times["paradis"], "dense switches", times["dense"]),
        Row("training_step", case, "ParaDiS step (loop)", times["loop"], "dense switches", times["dense"]),
    ]


def run(args: argparse.Namespace) -> list[Row]:
    batch = 8 if args.quick else args.batch
    repeats = 2 if args.quick else args.repeats
    rows = []
    for name, size in MODELS.items():
        rows += measure_model(name, size, batch, repeats, args)
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and input, dense nets too")
    args = parser.parse_args(argv)
    rows = run(args)
    report(rows, args, "ParaDiS training step")
    return rows


if __name__ == "__main__":
    main()

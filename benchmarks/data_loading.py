"""Data loading against training: the loader must deliver batches at least 3 times as fast as the
training step consumes them (the goal is a ratio of at most 1/3 = loader time / step time).

    python -m benchmarks.data_loading [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from benchmarks.common import Row, add_common_args, median_time, report
from paradis import create_model
from paradis.config import TrainingConfig
from paradis.data import DataError, load_dataset, make_loader, subset
from paradis.methods import make_planner
from paradis.methods.step import train_step


def loader_batch_time(loader, batches: int) -> float:
    """Median seconds per batch of iterating ``loader`` (decoding, augmentation, normalization)."""
    times = []
    it = iter(loader)
    next(it)  # start-up (workers, the epoch's shuffle) is not a per-batch cost
    for _ in range(batches):
        t0 = time.perf_counter()
        x, _ = next(it)
        x.sum()  # the batch is really there
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(args: argparse.Namespace) -> list[Row]:
    device = torch.device(args.device)
    rows = []
    cases = [("fashion-mnist", "mobilenet_v1_small", False), ("cifar-like augmented", "resnet_small", True)]
    for label, model_name, augment in cases:
        try:
            splits = load_dataset("fashion-mnist")
        except DataError:
            splits = load_dataset("synthetic", train_size=4_096, test_size=256)
        train = subset(splits.train, 4_096, 0)
        if augment:  # CIFAR's per-image random crop and flip, on 3-channel 32x32 images
            from dataclasses import replace

            images = torch.nn.functional.pad(train.images, (2, 2, 2, 2)).repeat(1, 3, 1, 1)
            train = replace(train, images=images, augment=True, mean=(0.5,) * 3, std=(0.25,) * 3)
        size = tuple(train.images.shape[1:])
        loader = make_loader(train, args.batch, shuffle=True, drop_last=True, device=device)
        batches = 4 if args.quick else 20
        load = loader_batch_time(loader, batches)
        model = create_model(model_name, num_classes=10, in_chans=size[0]).to(device).train()
        plan = make_planner(TrainingConfig(method="paradis")).next_plan()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x, y = next(iter(loader))
        step = median_time(partial(train_step, model, optimizer, x, y, plan), device, repeats=2 if args.quick else 5)
        case = f"{label} {size} b{args.batch}"
        rows.append(Row("data_loading", case, "loader per batch", load, "ParaDiS step per batch", step, 1 / 3))
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args(argv)
    rows = run(args)
    report(rows, args, "data loading")
    return rows


if __name__ == "__main__":
    main()

"""BN calibration of every evaluated switch against one training epoch, on Fashion-MNIST (or synthetic
data where the Debian package is missing) with the defaults of ``configs/fashion_mnist_paradis.yaml``.

    python -m benchmarks.calibration [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import Row, add_common_args, report, synchronize
from paradis import calibrate_bn, create_model
from paradis.config import PAPER_TABLE_SWITCHES, TrainingConfig
from paradis.data import DataError, load_dataset, make_loader, subset
from paradis.methods import make_planner
from paradis.methods.step import train_step


def run(args: argparse.Namespace) -> list[Row]:
    device = torch.device(args.device)
    try:
        splits, data = load_dataset("fashion-mnist"), "Fashion-MNIST"
    except DataError:
        splits, data = load_dataset("synthetic", train_size=12_000, test_size=1_000), "synthetic"
    train = subset(splits.train, 1_024 if args.quick else args.train_size, 0)
    batch = args.batch
    model = create_model("mobilenet_v1_small", num_classes=10, in_chans=1).to(device)
    cfg = TrainingConfig(method="paradis", switches=["[1.0]", "[0.5, 0.5]", "[4x0.25]"], batch_size=batch)
    planner = make_planner(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = make_loader(train, batch, shuffle=True, drop_last=True, device=device)
    model.train()
    synchronize(device)
    t0 = time.perf_counter()
    steps = 0
    for x, y in loader:
        train_step(model, optimizer, x, y, planner.next_plan())
        steps += 1
    synchronize(device)
    epoch = time.perf_counter() - t0
    calib_batches = 2 if args.quick else args.calibration_batches
    calib = make_loader(subset(train, calib_batches * batch, 1), batch, shuffle=False, device=device)
    synchronize(device)
    t0 = time.perf_counter()
    for s in PAPER_TABLE_SWITCHES:
        calibrate_bn(model, s, calib, device=device)
    synchronize(device)
    calibration = time.perf_counter() - t0
    case = f"{data} {len(train)} images, {len(PAPER_TABLE_SWITCHES)} switches x {calib_batches} batches of {batch}"
    return [Row("calibration", case, "calibrate all switches", calibration, f"1 epoch ({steps} steps)", epoch)]


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=12_000)
    parser.add_argument("--calibration-batches", type=int, default=20)
    args = parser.parse_args(argv)
    rows = run(args)
    report(rows, args, "BN calibration")
    return rows


if __name__ == "__main__":
    main()

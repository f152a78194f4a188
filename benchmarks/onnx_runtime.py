"""ONNX Runtime fp32 and int8 against torch eager, per sub-network of exported switches (issue 16).

    python -m benchmarks.onnx_runtime [--checkpoint ckpt/] [--batch 1 64] [--threads 1] [--quick]

Exports ``[1.0]``, ``[0.5, 0.5]`` and ``[4x0.25]`` of ``mobilenet_v1_small`` with ``--format onnx
--quantize int8`` (``paradis.deploy.export_switch``) and times, for the busiest sub-network of each
switch (all of its sub-networks are equally wide), a batch of each ``--batch`` size through torch eager
(``inference_mode``), through ONNX Runtime on ``device{i}.onnx`` and on ``device{i}.int8.onnx``, each
with ``--threads`` CPU threads: medians of interleaved rounds, so that other load on the machine falls
on all three alike.
Rows: ORT fp32 / torch, ORT int8 / torch and ORT int8 / ORT fp32 (lower is faster), with the file
sizes and the largest difference of each ONNX output from torch's.

Without ``--checkpoint`` the weights are random with BN and the int8 calibration on synthetic images:
time does not depend on the weights. ONNX Runtime runs on its CPU provider (``--device`` is ignored).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Row, add_common_args, interleaved_medians, report
from paradis import calibrate_bn, create_model
from paradis.deploy import EdgeOptions, TrainedModel, export_switch, load_artifact, load_subnetwork, load_trained
from paradis.deploy.onnx import run_data

SWITCHES = ("[1.0]", "[0.5, 0.5]", "[4x0.25]")
SYNTHETIC_RUN = {  # a run configuration as paradis.engine stores it: synthetic data, BN calibration
    "data": {"name": "synthetic", "synthetic_train": 512, "synthetic_test": 64},
    "training": {"seed": 0, "batch_size": 64},
    "evaluation": {"calibration_batches": 4},
}


def random_model(switches: tuple[str, ...]) -> TrainedModel:
    """mobilenet_v1_small with random weights, BN calibrated for ``switches`` on synthetic images."""
    model = create_model("mobilenet_v1_small", num_classes=10)
    calibration = run_data("synthetic", SYNTHETIC_RUN, EdgeOptions(), need_test=False).calibration
    for s in switches:
        calibrate_bn(model, s, calibration)
    return TrainedModel.of(model.eval(), "mobilenet_v1_small", (1, 28, 28), dataset="synthetic", config=SYNTHETIC_RUN)


def measure_switch(trained: TrainedModel, switch: str, folder: Path, args: argparse.Namespace) -> list[Row]:
    """Export ``switch`` to ``folder`` and time its first sub-network in the three runtimes, per batch size."""
    edge = EdgeOptions(formats=("onnx",), quantize="int8", test_images=0)
    manifest = export_switch(trained, switch, folder, programs=False, edge=edge)
    net = load_subnetwork(folder, 0, manifest)
    fp32 = load_artifact(folder, 0, "onnx", manifest, threads=args.threads)
    int8 = load_artifact(folder, 0, "onnx-int8", manifest, threads=args.threads)
    d = manifest.devices[0]
    sizes = {k: manifest.files[d.artifacts[k]]["bytes"] for k in ("onnx", "onnx-int8")}
    rows = []
    for batch in args.batch:
        x = torch.randn(batch, *trained.input_size)

        def eager(x: torch.Tensor = x) -> torch.Tensor:
            with torch.inference_mode():
                return net(x)

        want = eager()
        diff = {"fp32": float((fp32(x) - want).abs().max())}  # int8 on random inputs would say nothing
        calls = {"torch": eager, "fp32": lambda x=x: fp32(x), "int8": lambda x=x: int8(x)}
        t = interleaved_medians(calls, torch.device("cpu"), warmup=args.warmup, repeats=args.repeats)
        extra = {"bytes_fp32": sizes["onnx"], "bytes_int8": sizes["onnx-int8"], "max_abs_diff": diff}
        case = f"{switch} device 0 of {len(manifest.devices)}, batch {batch}"
        rows += [
            Row("onnx_runtime", case, "ORT fp32", t["fp32"], "torch eager", t["torch"], extra=extra),
            Row("onnx_runtime", case, "ORT int8", t["int8"], "torch eager", t["torch"], extra=extra),
            Row("onnx_runtime", case, "ORT int8", t["int8"], "ORT fp32", t["fp32"], extra=extra),
        ]
    return rows


def run(args: argparse.Namespace) -> list[Row]:
    switches = ("[0.5, 0.5]",) if args.quick else SWITCHES
    trained = load_trained(args.checkpoint) if args.checkpoint else random_model(switches)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="paradis-onnx-bench-") as tmp:
        for i, s in enumerate(switches):
            rows += measure_switch(trained, s, Path(tmp) / f"switch{i}", args)
    for r in rows[::3]:
        e = r.extra
        print(
            f"{r.case}: device0.onnx {e['bytes_fp32']} bytes, device0.int8.onnx {e['bytes_int8']} bytes; "
            f"max |ORT fp32 - torch| {e['max_abs_diff']['fp32']:.1e} (int8's accuracy: the export's manifest)"
        )
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--checkpoint", help="a trained model (default: random weights, synthetic calibration)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="batch sizes (default 1 64)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch and of each ORT session")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.repeats = 2, 5
    rows = run(args)
    report(rows, args, f"ONNX Runtime against torch eager ({args.threads} thread(s))")
    return rows


if __name__ == "__main__":
    main()

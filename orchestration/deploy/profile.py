"""``profile-devices``: time every sub-network of every switch on each named device, and write one
latency table per device (:mod:`paradis.deploy.latency`) for ``plan --latency-table``.

Each device is a pinned pool actor: the actor of device ``NAME`` requests the custom resource
``{NAME: 1}``, so it runs on the node started with ``ray start --resources '{"NAME": 1}'`` (a local Ray
is started with those resources). The devices are timed one after the other, each sub-network alone,
so that devices sharing a machine do not slow each other down; torch always, ONNX Runtime when the
switch's ``.onnx`` files are given (``--export``) or can be made (``onnx`` and ``onnxscript`` installed).
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from orchestration.deploy.checks import (
    MAX_DEVICES,
    CommandError,
    check_batch,
    check_output_folder,
    switches_with_stats,
)
from orchestration.deploy.commands import ray_session
from orchestration.deploy.pool import RESERVED_RESOURCES, DevicePool
from orchestration.deploy.sources import load_source
from paradis.costs import profile
from paradis.deploy import Device, EdgeOptions, TrainedModel, export_switch, verify_export
from paradis.deploy.files import quote
from paradis.deploy.latency import FORMAT, VERSION, LatencyTable, write_latency_table
from paradis.deploy.load import artifact_bytes
from paradis.deploy.onnx import check_installed
from paradis.switch import Switch, parse_switch

OnnxFiles = dict[Switch, list[bytes]]


def device_names(given: Sequence[str]) -> list[str]:
    """The ``--device`` names: distinct, valid device names and usable as Ray custom resources."""
    if not given:
        raise CommandError("name at least one --device")
    if len(given) > MAX_DEVICES:
        raise CommandError(f"{len(given)} --device options, more than {MAX_DEVICES}")
    for name in given:
        Device(name)  # the planner's rules: 1 to 200 printable characters
        if name in RESERVED_RESOURCES or name.startswith(("node:", "accelerator_type:")) or "/" in name:
            raise CommandError(f"device name {quote(name)} cannot be a Ray custom resource (or a file name)")
    if len(set(given)) != len(given):
        raise CommandError(f"device names must be distinct: {quote(list(given))}")
    return list(given)


def profile_devices_command(args: argparse.Namespace) -> int:
    """Check everything, make the ONNX files, then time each device and write its table."""
    names = device_names(args.device)
    check_output_folder(args.output, "--output")
    targets = [Path(args.output) / f"{n}.json" for n in names]
    taken = [t.name for t in targets if t.exists()]
    if taken and not args.force:
        raise CommandError(f"--output {quote(args.output)} already holds {quote(taken)}; give --force to replace them")
    trained = load_source(args)
    wanted = args.switches or [str(s) for s in trained.model.bn_switches()]
    switches = switches_with_stats(trained.model, wanted, "switch")
    if not switches:
        raise CommandError(f"{trained.source}: no switch of the model has BN statistics")
    check_batch(args.batch, trained.input_size, "--batch")
    x = torch.randn(args.batch, *trained.input_size)
    with tempfile.TemporaryDirectory(prefix="paradis-profile-") as tmp:
        onnx = onnx_files(trained, switches, args, Path(tmp))
        Path(args.output).mkdir(parents=True, exist_ok=True)
        with ray_session(args, len(names) * args.threads, resources=dict.fromkeys(names, 1)):
            pool = DevicePool(names, threads=args.threads, pin=True, call_timeout_s=args.call_timeout_s)
            try:
                pool.load_full(trained, switches[0])
                for name, target in zip(names, targets):
                    table = write_latency_table(target, measure_device(pool, name, trained, switches, x, onnx, args))
                    print_table(table, target)
            finally:
                pool.shutdown()
    return 0


def onnx_files(trained: TrainedModel, switches: Sequence[Switch], args: argparse.Namespace, tmp: Path) -> OnnxFiles:
    """Per switch, the verified bytes of its ``.onnx`` files: from ``--export`` folders, else exported
    here into ``tmp``; ``{}`` (torch only) with ``--no-onnx`` or when ONNX export is not installed."""
    if args.no_onnx:
        return {}
    files: OnnxFiles = {}
    for folder in args.export or []:
        m = verify_export(folder)
        if {"rounding": "paradis", **m.model} != trained.model_args():  # manifests before rounding: the shared rule
            raise CommandError(f"--export {quote(folder)} is of model {quote(m.model)}, not {trained.model_args()}")
        if "onnx" not in m.devices[0].artifacts:
            raise CommandError(f"--export {quote(folder)} has no .onnx files (exported without --format onnx)")
        files[parse_switch(m.switch)] = [artifact_bytes(folder, d.index, "onnx", m) for d in m.devices]
    missing = [s for s in switches if s not in files]
    try:
        check_installed(EdgeOptions(formats=("onnx",)))
    except ImportError as err:
        if missing:
            print(f"profile-devices: torch only, no ONNX Runtime timings ({err})")
            return {}
    for s in missing:
        t0 = time.perf_counter()
        out = tmp / s.slug
        m = export_switch(trained, s, out, programs=False, edge=EdgeOptions(formats=("onnx",), test_images=0))
        files[s] = [artifact_bytes(out, d.index, "onnx", m) for d in m.devices]
        print(f"exported {s} to ONNX for the timing in {time.perf_counter() - t0:.1f} s")
    return files


def measure_device(
    pool: DevicePool,
    name: str,
    trained: TrainedModel,
    switches: Sequence[Switch],
    x: torch.Tensor,
    onnx: OnnxFiles,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Device ``name``'s latency table: every sub-network of every switch, torch and ONNX Runtime."""
    rows = []
    for s in switches:
        parts = pool.time_switch(name, s, x, warmup=args.warmup, repeats=args.repeats, onnx=onnx.get(s))
        prof = profile(trained.model, s, trained.input_size)
        rows.append(
            {
                "switch": str(s),
                "accuracy": trained.accuracy.get(str(s)),
                "device_macs": list(prof.device_macs),
                "device_params": list(prof.device_params),
                "parts": [{"index": i, "width": s.widths[i], **p} for i, p in enumerate(parts)],
            }
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "device": name,
        "host": pool.host(name),
        "model": trained.model_args(),
        "source": trained.source,
        "batch": int(x.shape[0]),
        "input_shape": list(x.shape),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "runtimes": ["torch", "onnxruntime"] if onnx else ["torch"],
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "switches": rows,
    }


def print_table(table: LatencyTable, path: Path) -> None:
    host = table.data["host"]
    print(
        f"device {table.device} ({host['hostname']}, {host['cpu']}, {host['threads']} thread(s)), batch "
        f"{table.batch}: {path}"
    )
    for row in table.data["switches"]:
        cells = []
        for runtime in table.runtimes:
            p50 = "/".join(f"{1e3 * p[runtime]['p50_s']:.3f}" for p in row["parts"])
            p95 = "/".join(f"{1e3 * p[runtime]['p95_s']:.3f}" for p in row["parts"])
            cells.append(f"{runtime} p50 {p50} ms, p95 {p95} ms")
        print(f"  {row['switch']}: " + "; ".join(cells))

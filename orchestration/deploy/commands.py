"""The deploy commands ``export``, ``plan``, ``serve-bench`` and ``verify``: each checks its values
before it loads a model or starts Ray, then does its work and prints what it did."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from orchestration.deploy.checks import (
    MAX_DEVICES,
    CommandError,
    check_batch,
    check_output_file,
    check_output_folder,
    edge_options,
    switches_with_stats,
)
from orchestration.deploy.pool import DevicePool
from orchestration.deploy.registry import check_version_switch, fetch_model, source_description
from orchestration.deploy.sources import load_source
from paradis.deploy import (
    Device,
    Manifest,
    Plan,
    export_switch,
    measure_latency,
    parse_device,
    plan,
    read_table,
    switch_table,
    verify_export,
)
from paradis.deploy.export import copy_export, files_to_replace
from paradis.deploy.files import quote
from paradis.deploy.latency import (
    LatencyTable,
    check_tables_of,
    merged_rows,
    read_latency_tables,
    table_latencies,
)
from paradis.deploy.load import load_fusion, load_subnetwork
from paradis.deploy.manifest import named_files
from paradis.deploy.planner import Latencies, SwitchOption
from paradis.switch import Switch
from paradis.util import first_line


# --- export ----------------------------------------------------------------------------------------
def export_command(args: argparse.Namespace) -> int:
    """``export``: the switch's files and manifest in ``--output`` (refused when work would be lost);
    with ``--model-uri``, the registered version's files, checked, copied to ``--output``."""
    check_output_folder(args.output, "--output")
    if args.model_uri:
        return export_version(args)
    if not args.switch:
        raise CommandError("give --switch (or --model-uri for a registered version)")
    edge = edge_options(args)
    files_to_replace(Path(args.output).resolve(), args.force)  # before the model is even loaded
    trained = load_source(args)
    if args.dataset:
        trained.dataset = args.dataset
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    m = export_switch(trained, args.switch, args.output, programs=not args.no_programs, edge=edge, overwrite=args.force)
    print_export(m, f"{trained.source} to {args.output} in {time.perf_counter() - t0:.1f} s")
    return 0


def export_version(args: argparse.Namespace) -> int:
    """``export --model-uri``: the version's export, every file checked, copied to ``--output``."""
    if args.format or args.quantize:
        raise CommandError("--format / --quantize need --checkpoint or --run-id: a version holds only its files")
    files_to_replace(Path(args.output).resolve(), args.force)
    with tempfile.TemporaryDirectory(prefix="paradis-model-") as tmp:
        folder, m, info = fetch_model(args, args.model_uri, tmp)
        check_version_switch(args, m, "--switch")
        copy_export(folder, args.output, overwrite=args.force)
    print_export(m, f"{source_description(args.model_uri, info)} to {args.output}")
    return 0


def print_export(m: Manifest, where: str) -> None:
    acc = "unknown" if m.accuracy is None else f"{100 * m.accuracy:.2f} %"
    print(
        f"exported switch {m.switch} of {where}: top-1 {acc}, "
        f"{m.macs / 1e6:.2f} MMACs ({m.max_device_macs / 1e6:.2f} on the busiest device)"
    )
    for d in m.devices:
        files = [d.program_file, *d.artifacts.values()]
        sizes = "".join(f", {f} {m.files[f]['bytes']} bytes" for f in files if f)
        print(
            f"  device {d.index}: width {d.width:g} {d.channels}, {d.macs / 1e6:.2f} MMACs, {d.params} params, "
            f"{d.state_file} {d.file_bytes} bytes" + sizes
        )
    for kind, info in m.artifacts.items():
        print(f"  {kind}: written in {info['export_seconds']:.2f} s (all devices)")
    if m.evaluation:
        ev = m.evaluation
        top1 = ", ".join(f"{k} {100 * v:.2f} % ({ev['seconds'][k]:.1f} s)" for k, v in ev["top1"].items())
        print(f"  top-1 on {ev['images']} test images (fused): {top1}")


# --- plan ------------------------------------------------------------------------------------------
def plan_devices(args: argparse.Namespace) -> list[Device]:
    if len(args.device) > MAX_DEVICES:
        raise CommandError(f"{len(args.device)} --device options, more than {MAX_DEVICES}")
    return [parse_device(t) for t in args.device] or [Device(f"device{i}") for i in range(args.devices or 2)]


def table_devices(tables: Sequence[LatencyTable], given: Sequence[str]) -> list[Device]:
    """The devices of the latency tables; ``--device NAME::MEMORY`` may give one's memory (its speed is
    what its table measured)."""
    extra = {d.name: d for d in map(parse_device, given)}
    names = [t.device for t in tables]
    for d in extra.values():
        if d.name not in names:
            raise CommandError(f"--device {quote(d.name)} has no latency table (tables: {quote(names)})")
        if d.speed != 1.0:
            raise CommandError(f"--device {quote(d.name)}: its latency table measures its speed; give NAME::MEMORY")
    return [Device(n, memory=extra[n].memory if n in extra else None) for n in names]


def plan_inputs(args: argparse.Namespace) -> tuple[list[Device], list, Latencies | None]:
    """The devices, the planner's table and (with ``--latency-table``) the measured costs per device."""
    if not (args.table or args.checkpoint or args.run_id or args.model_uri or args.latency_table):
        raise CommandError("give --table, --checkpoint, --run-id, --model-uri or --latency-table")
    latencies, tables = None, None
    if args.latency_table:
        if args.measure_batch or args.devices:
            raise CommandError("--latency-table gives the devices and their costs: drop --measure-batch / --devices")
        tables = read_latency_tables(args.latency_table)
        latencies = table_latencies(tables, args.runtime, args.latency_stat)
        devices = table_devices(tables, args.device)
    else:
        devices = plan_devices(args)
    if args.table:
        return devices, read_table(args.table), latencies
    if args.model_uri:
        return devices, version_rows(args), latencies
    if not (args.checkpoint or args.run_id):
        return devices, merged_rows(tables or []), latencies
    trained = load_source(args)
    if tables:
        check_tables_of(tables, trained.model_args(), "the trained model")
    if args.measure_batch:
        check_batch(args.measure_batch, trained.input_size, "--measure-batch")
    switches = switches_with_stats(trained.model, args.switches, "switch") if args.switches else None
    if args.threads:
        torch.set_num_threads(args.threads)
    return devices, switch_table(trained, switches, measure_batch=args.measure_batch), latencies


def version_rows(args: argparse.Namespace) -> list[SwitchOption]:
    """A planner row per registered version (``--model-uri``, repeated): its switch's accuracy, costs
    and, with ``--measure-batch``, the seconds of its sub-networks here (loaded from its checked files)."""
    rows: dict[Switch, SwitchOption] = {}
    with tempfile.TemporaryDirectory(prefix="paradis-model-") as tmp:
        for i, uri in enumerate(args.model_uri):
            folder, m, _ = fetch_model(args, uri, str(Path(tmp) / str(i)))
            s = m.parsed_switch
            if s in rows:
                raise CommandError(f"two --model-uri versions hold switch {s}")
            seconds = time_version(folder, m, args.measure_batch) if args.measure_batch else None
            macs, params = tuple(d.macs for d in m.devices), tuple(d.params for d in m.devices)
            rows[s] = SwitchOption(s, m.accuracy, macs, params, seconds)
    return list(rows.values())


def time_version(folder: Path, m: Manifest, batch: int) -> tuple[float, ...]:
    """Median seconds of each sub-network of an export here, at ``batch`` (current torch threads)."""
    check_batch(batch, m.input["shape"][1:], "--measure-batch")
    x = torch.randn(batch, *m.input["shape"][1:])
    nets = [load_subnetwork(folder, d.index, m) for d in m.devices]
    with torch.inference_mode():
        return tuple(measure_latency(lambda net=net, x=x: net(x)) for net in nets)


def plan_command(args: argparse.Namespace) -> int:
    """``plan``: the most accurate switch and its assignment within the budget, explained."""
    check_output_file(args.save_table, "--save-table")
    devices, table, latencies = plan_inputs(args)
    if args.save_table:
        Path(args.save_table).write_text(json.dumps([o.as_dict() for o in table], indent=1) + "\n")
    budget, overhead = args.budget_ms / 1e3, args.overhead_ms / 1e3
    rate = args.macs_per_second
    p = plan(devices, budget, table, macs_per_second=rate, overhead_s=overhead, latencies=latencies)
    print_plan(p, args.json)
    return 0


def print_plan(p: Plan, as_json: bool) -> None:
    print(p.explain())
    if as_json:
        chosen = {"switch": str(p.switch), "accuracy": p.accuracy, "latency_s": p.latency_s}
        print(json.dumps({**chosen, "assignment": [a.device for a in p.assignment]}))


# --- serve-bench -----------------------------------------------------------------------------------
def serve_bench_command(args: argparse.Namespace) -> int:
    """``serve-bench``: the switches on a Ray device pool, against the in-process model."""
    if args.model_uri:
        return serve_version(args)
    trained = load_source(args)
    if not trained.model.bn_switches():
        raise CommandError(f"{trained.source}: no switch of the model has BN statistics; none can run")
    wanted = args.switch or [str(trained.model.bn_switches()[0])]
    switches = switches_with_stats(trained.model, wanted, "--switch")  # all refused before Ray starts
    widest = max(len(s) for s in switches)
    n = args.devices or widest
    if n < widest:
        raise CommandError(f"--devices {n}: switch {max(switches, key=len)} needs {widest} devices")
    check_batch(args.batch, trained.input_size, "--batch")
    x = torch.randn(args.batch, *trained.input_size)
    with ray_session(args, n * args.threads, n * args.gpus_per_device):
        pool = DevicePool(n, threads=args.threads, gpus_per_device=args.gpus_per_device)
        try:
            t0 = time.perf_counter()
            pool.load_full(trained, switches[0])
            seconds = time.perf_counter() - t0
            print(f"{n} device(s), {args.threads} thread(s) each; full model loaded in {seconds:.2f} s")
            for s in switches:
                bench_switch(pool, trained, s, x, args)
        finally:  # on a cluster given by --address the actors would otherwise outlive the command
            pool.shutdown()
    return 0


def serve_version(args: argparse.Namespace) -> int:
    """``serve-bench --model-uri``: each device receives its checked ``device{i}.pt`` of the version;
    the pool's output against the in-process fusion of the same files."""
    with tempfile.TemporaryDirectory(prefix="paradis-model-") as tmp:
        folder, m, info = fetch_model(args, args.model_uri, tmp)
        check_version_switch(args, m, "--switch")
        n = args.devices or len(m.devices)
        if n < len(m.devices):
            raise CommandError(f"--devices {n}: switch {m.switch} needs {len(m.devices)} devices")
        check_batch(args.batch, m.input["shape"][1:], "--batch")
        x = torch.randn(args.batch, *m.input["shape"][1:])
        with torch.inference_mode():
            want = load_fusion(folder, m)([load_subnetwork(folder, d.index, m)(x) for d in m.devices])
        with ray_session(args, n * args.threads, n * args.gpus_per_device):
            pool = DevicePool(n, threads=args.threads, gpus_per_device=args.gpus_per_device)
            try:
                pool.load_switch(folder)
                print(f"{n} device(s), {args.threads} thread(s) each; {source_description(args.model_uri, info)}")
                report_latency(pool, m.parsed_switch, x, (pool(x) - want).abs().max().item(), args)
            finally:
                pool.shutdown()
    return 0


def bench_switch(pool: DevicePool, trained, s, x: torch.Tensor, args: argparse.Namespace) -> None:
    pool.set_switch(s)
    got = pool(x)
    with torch.no_grad():
        want = trained.model.eval()(x, s)
    report_latency(pool, s, x, (got - want).abs().max().item(), args)


def report_latency(pool: DevicePool, s, x: torch.Tensor, diff: float, args: argparse.Namespace) -> None:
    lat = measure_latency(lambda: pool(x), warmup=args.warmup, repeats=args.iters)
    loads = sum(i["loads"] for i in pool.info().values())
    print(
        f"switch {s} on {', '.join(pool.assignment)}: median {1e3 * lat:.3f} ms per batch of {args.batch}, "
        f"{args.batch / lat:.0f} images/s, max |pool - in-process| = {diff:.2e}, weight loads so far {loads}"
    )


class ray_session:  # lower case: used as a context manager, like a function
    """A Ray session for a command: the one already running, ``--address``, or a local one with
    ``cpus`` CPUs (and ``gpus``, and custom ``resources``) shut down at the end."""

    def __init__(self, args: argparse.Namespace, cpus: float, gpus: float = 0.0, resources: dict | None = None):
        self.address, self.cpus, self.gpus, self.resources = args.address, cpus, gpus, resources
        self.owned = False

    def __enter__(self):
        import ray

        if ray.is_initialized():
            return self
        try:
            if self.address:
                ray.init(address=self.address)
            else:
                ray.init(  # address "local": a new Ray of its own, never a cluster found on this machine
                    address="local",
                    num_cpus=max(int(self.cpus), 1),
                    num_gpus=self.gpus or None,
                    resources=self.resources or None,
                    include_dashboard=False,
                    log_to_driver=False,
                )
        except Exception as err:  # Ray raises several types for an unreachable or refused cluster
            raise CommandError(f"Ray could not start ({type(err).__name__}: {first_line(err, 200)})") from None
        self.owned = True
        return self

    def __exit__(self, *exc) -> None:
        import ray

        if self.owned:
            ray.shutdown()


# --- verify ----------------------------------------------------------------------------------------
SAFETY = {
    ".pt": "code-safe (weights only)",
    ".onnx": "code-safe (ONNX Runtime from bytes)",
    ".pt2": "trusted sources only (torch.export.load unpickles)",
    ".pte": "trusted sources only",
}


def verify_command(args: argparse.Namespace) -> int:
    """``verify``: the manifest and the size and SHA-256 of every file it names, nothing loaded."""
    m = verify_export(args.folder)
    names = named_files(m)
    print(f"{args.folder}: switch {m.switch}, manifest format {m.format}, {len(names)} files match their SHA-256")
    for name in names:
        kind = next((v for k, v in SAFETY.items() if name.endswith(k)), "unknown kind")
        print(f"  {name}: {m.files[name]['bytes']} bytes, {m.files[name]['sha256'][:16]}..., {kind}")
    return 0

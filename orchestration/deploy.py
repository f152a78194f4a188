"""Deploy a trained switch across devices: a device pool on Ray actors, and the command line.

::

    python -m orchestration.deploy export --checkpoint ckpt/checkpoint.pt --switch "[0.5, 0.5]" --output out/
    python -m orchestration.deploy export --run-id 1a2b3c --switch "[4x0.25]" --output out/
    python -m orchestration.deploy export --checkpoint ckpt/ --switch "[4x0.25]" --output out/ --format onnx \\
        --quantize int8
    python -m orchestration.deploy plan --checkpoint ckpt/ --device a:1.0 --device b:0.5 --budget-ms 5 \\
        --measure-batch 64
    python -m orchestration.deploy serve-bench --checkpoint ckpt/ --switch "[0.5, 0.25, 0.25]" --switch "[0.5, 0.5]"

A :class:`DevicePool` has one Ray actor per device (``threads`` CPU threads each, or a GPU each); the
sub-networks of the switch run in parallel on the same input and the driver fuses their partial outputs
(sum, plus the classifier's bias once). With the full model on every actor (:meth:`DevicePool.load_full`)
changing the switch moves no weights; with :meth:`DevicePool.load_switch` each actor receives only its
sub-network. A device that fails raises :class:`DeviceFailure` naming it, or, with ``allow_fallback``,
the pool continues with the most accurate switch that fits the devices left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from paradis.deploy import (
    Device,
    DeviceWorker,
    ExportError,
    Plan,
    PlanError,
    SwitchOption,
    TrainedModel,
    best_fallback,
    export_switch,
    load_trained,
    measure_latency,
    parse_device,
    plan,
    read_manifest,
    read_table,
    switch_table,
)
from paradis.deploy.export import accuracy_from_metrics, load_fusion, load_state
from paradis.deploy.onnx import FORMATS, QUANTIZATIONS, EdgeOptions
from paradis.switch import Switch, SwitchLike, parse_switch


class DeviceFailure(RuntimeError):
    """A device of the pool failed (its actor died or became unreachable)."""

    def __init__(self, message: str, devices: Sequence[str]):
        super().__init__(message)
        self.devices = list(devices)


_ACTOR_CLASS = None


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        _ACTOR_CLASS = ray.remote(DeviceWorker)
    return _ACTOR_CLASS


class DevicePool:
    """One Ray actor per device. ``devices`` is a count or a list of names.

    ``threads``: CPU threads of each actor (``torch.set_num_threads`` in the actor, and its Ray CPU
    reservation); ``gpus_per_device`` > 0 puts each actor on its own GPU. ``table`` (the planner's
    rows) ranks switches for the fall-back; without it the trained model's accuracies are used.
    ``channels_last``: the devices run the convolutions in NHWC layout (faster on CPUs).
    """

    def __init__(
        self,
        devices: int | Sequence[str],
        *,
        threads: int = 1,
        gpus_per_device: float = 0.0,
        table: Sequence[SwitchOption] | None = None,
        channels_last: bool = True,
        start_timeout_s: float = 120.0,
        call_timeout_s: float | None = None,
    ):
        import ray

        if call_timeout_s is not None and not call_timeout_s > 0:
            raise ValueError(f"call_timeout_s {call_timeout_s!r} must be a positive number of seconds or None")
        self.call_timeout_s = call_timeout_s

        names = [f"device{i}" for i in range(devices)] if isinstance(devices, int) else list(devices)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"devices {names!r}: give a positive count or distinct names")
        if not ray.is_initialized():
            raise RuntimeError("Ray is not initialized: call ray.init(...) before creating a DevicePool")
        device = "cuda" if gpus_per_device > 0 else "cpu"
        cls = _actor_class()
        self.actors = {
            name: cls.options(num_cpus=threads, num_gpus=gpus_per_device).remote(
                name, threads=threads, device=device, channels_last=channels_last
            )
            for name in names
        }
        self.names = names
        self.alive = list(names)
        self.table = list(table) if table is not None else None
        self.trained: TrainedModel | None = None
        self.mode: str | None = None  # "full" or "parts"
        self.switch: Switch | None = None
        self.assignment: list[str] = []
        self.bias: torch.Tensor | None = None
        self.events: list[str] = []
        try:  # fail here, not at the first call
            ray.get([a.info.remote() for a in self.actors.values()], timeout=start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            for actor in self.actors.values():
                ray.kill(actor)
            raise DeviceFailure(
                f"{len(names)} device actors ({threads} CPU(s), {gpus_per_device:g} GPU(s) each) did not start within "
                f"{start_timeout_s:g} s; the cluster has {ray.cluster_resources()}",
                names,
            ) from None
        except ray.exceptions.RayActorError as err:  # an actor died while starting (e.g. no usable GPU)
            for actor in self.actors.values():
                ray.kill(actor)
            raise DeviceFailure(
                f"a device actor died while starting: {str(err).strip().splitlines()[0][:300]}", names
            ) from None

    # loading ----------------------------------------------------------------------------------
    def load_full(self, trained: TrainedModel, switch: SwitchLike | None = None) -> None:
        """Every device holds the full model (sent once through the object store)."""
        import ray

        state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
        ref = ray.put(state)
        self._get_all({n: self.actors[n].load_full.remote(trained.model_args(), ref) for n in self.alive})
        self.trained, self.mode = trained, "full"
        self.bias = _bias_of(trained)
        self.set_switch(switch or trained.model.bn_switches()[0])

    def load_switch(
        self,
        source: TrainedModel | str | os.PathLike,
        switch: SwitchLike | None = None,
        assignment: Sequence[str] | None = None,
    ) -> None:
        """Each assigned device receives only its sub-network: cut from a trained model, or the
        ``device{i}.pt`` files of an export folder (then ``switch`` is the manifest's)."""
        import ray

        if isinstance(source, TrainedModel):
            if switch is None:
                raise ValueError("load_switch of a trained model needs the switch")
            s = source.model.resolve(switch)
            nets = source.model.eval().extract(s).subnets
            states = [net.state_dict() for net in nets]
            args, bias = source.model_args(), _bias_of(source)
            self.trained = source
        else:
            manifest = read_manifest(source)
            s = manifest.parsed_switch
            if switch is not None and parse_switch(switch) != s:
                raise ExportError(f"{str(source)!r} holds switch {s}, not {parse_switch(switch)}")
            states = [load_state(source, d.index, manifest) for d in manifest.devices]  # digests checked
            args, bias = manifest.model, load_fusion(source, manifest).bias
            self.trained = None
        where = self._check_assignment(s, assignment)
        self._get_all(
            {dev: self.actors[dev].load_part.remote(args, str(s), i, ray.put(states[i])) for i, dev in enumerate(where)}
        )
        self.mode, self.switch, self.assignment = "parts", s, where
        self.bias = None if bias is None else bias.detach().cpu()

    def set_switch(self, switch: SwitchLike, assignment: Sequence[str] | None = None) -> None:
        """Run ``switch`` from now on. With the full model on the devices nothing is sent; with single
        sub-networks they are replaced (which needs the trained model)."""
        if self.mode is None:
            raise RuntimeError("the pool holds no model: call load_full or load_switch first")
        s = parse_switch(switch)
        if self.trained is not None:
            s = self.trained.model.resolve(s)
            if not self.trained.model.has_bn_stats(s):  # else the devices would fail at the first call
                raise ValueError(
                    f"switch {s} has no BN statistics in this model; switches with statistics: "
                    f"{', '.join(map(str, self.trained.model.bn_switches())) or 'none'}"
                )
        where = self._check_assignment(s, assignment)
        if self.mode == "parts" and (s != self.switch or where != self.assignment):
            if self.trained is None:
                raise RuntimeError(
                    f"the devices hold only the sub-networks of {self.switch} from an export folder; "
                    f"load {s} with load_switch"
                )
            self.load_switch(self.trained, s, where)
            return
        self.switch, self.assignment = s, where

    def apply(self, chosen: Plan) -> None:
        """Run a planner's choice: its switch, each sub-network on the device it was assigned to."""
        self.set_switch(chosen.switch, [a.device for a in chosen.assignment])

    def _check_assignment(self, s: Switch, assignment: Sequence[str] | None) -> list[str]:
        if assignment is None:
            if len(s) > len(self.alive):
                raise DeviceFailure(
                    f"switch {s} needs {len(s)} devices; {len(self.alive)} working: {', '.join(self.alive)}",
                    [n for n in self.names if n not in self.alive],
                )
            return self.alive[: len(s)]
        where = list(assignment)
        if len(where) != len(s) or len(set(where)) != len(where):
            raise ValueError(f"assignment {where!r}: switch {s} needs {len(s)} distinct devices")
        for dev in where:
            if dev not in self.actors:
                raise ValueError(f"assignment {where!r}: unknown device {dev!r} (devices: {', '.join(self.names)})")
            if dev not in self.alive:
                raise DeviceFailure(f"device {dev} has failed and cannot run a sub-network", [dev])
        return where

    # running ----------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, *, allow_fallback: bool = False) -> torch.Tensor:
        """The fused output of the current switch on ``x``: its sub-networks run in parallel."""
        import ray

        if self.switch is None:
            raise RuntimeError("the pool holds no model: call load_full or load_switch first")
        x_ref = ray.put(x.detach().cpu())
        futures = {
            dev: self.actors[dev].forward.remote(x_ref, str(self.switch), i) for i, dev in enumerate(self.assignment)
        }
        partials, failed = self._get_each(futures, self.call_timeout_s)
        if failed:
            self._mark_failed(failed)
            if not allow_fallback:
                raise DeviceFailure(
                    f"device {', '.join(failed)} failed while running switch {self.switch} "
                    f"({', '.join(f'{d}: {why}' for d, why in failed.items())}); "
                    f"{len(self.alive)} device(s) left: {', '.join(self.alive) or 'none'}",
                    list(failed),
                )
            self._fall_back(list(failed))
            return self(x, allow_fallback=True)
        out = torch.stack(partials).sum(0)
        return out if self.bias is None else out + self.bias

    def _get_each(self, futures: dict[str, Any], timeout: float | None = None) -> tuple[list[Any], dict[str, str]]:
        """The results of the devices that answered, and ``{device: error}`` for those whose actor died
        or that did not answer within ``timeout`` (a hung device counts as failed and is stopped)."""
        import ray
        from ray.exceptions import RayActorError  # ActorUnavailableError is one too

        pending = list(futures.values())
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        done = set(ready)
        results, failed = [], {}
        for dev, fut in futures.items():
            if fut not in done:
                failed[dev] = f"no answer within {timeout:g} s"
                ray.kill(self.actors[dev])
                continue
            try:
                results.append(ray.get(fut))
            except RayActorError as err:
                failed[dev] = type(err).__name__
        return results, failed

    def _get_all(self, futures: dict[str, Any]) -> list[Any]:
        out, failed = self._get_each(futures)
        if failed:
            self._mark_failed(failed)
            raise DeviceFailure(f"device {', '.join(failed)} failed while loading weights", list(failed))
        return out

    def _mark_failed(self, failed) -> None:
        self.alive = [n for n in self.alive if n not in failed]

    def _fall_back(self, failed: list[str]) -> None:
        old = self.switch
        available = self.trained.model.bn_switches() if self.trained is not None else [old]
        table = self.table
        if table is None and self.trained is not None:
            table = [
                SwitchOption(s, self.trained.accuracy.get(str(s)), (0,) * len(s), (0,) * len(s)) for s in available
            ]
        choice = best_fallback(table or [], len(self.alive), available)
        if choice is None:  # no accuracies known: the widest switch that fits, on the fewest devices
            fits = [s for s in available if len(s) <= len(self.alive)]
            choice = max(fits, key=lambda s: (s.total, -len(s))) if fits else None
        left = f"{len(self.alive)} device(s) left ({', '.join(self.alive) or 'none'})"
        if self.mode == "parts" and self.trained is None:
            raise DeviceFailure(
                f"device {', '.join(failed)} failed while running switch {old}; the devices hold sub-networks "
                f"of an export folder, so no other switch can be sent to the {left}",
                failed,
            )
        if choice is None:
            raise DeviceFailure(
                f"device {', '.join(failed)} failed while running switch {old} and no switch with BN statistics "
                f"fits the {left}",
                failed,
            )
        self.set_switch(choice)
        self.events.append(
            f"device {', '.join(failed)} failed: switch {old} -> {choice} on {', '.join(self.assignment)}"
        )

    def info(self) -> dict[str, dict]:
        """Each working device's state: pid, loads, bytes of weights received, what it holds."""
        import ray

        return dict(zip(self.alive, ray.get([self.actors[n].info.remote() for n in self.alive])))

    def shutdown(self) -> None:
        import ray

        for actor in self.actors.values():
            ray.kill(actor)
        self.alive = []


def _bias_of(trained: TrainedModel) -> torch.Tensor | None:
    bias = getattr(trained.model.head, "bias", None)
    return None if bias is None else bias.detach().cpu().clone()


# --- loading a trained model -----------------------------------------------------------------------
def load_from_mlflow(run_id: str, tracking_uri: str | None = None, **kwargs) -> TrainedModel:
    """The checkpoint of a tracked trial run (artifact ``checkpoint/checkpoint.pt``), with the run's
    ``acc/<switch>`` metrics as accuracies; read through the tracking interface."""
    from orchestration.tracking import open_tracker, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    tracker = open_tracker(uri, experiment="")
    try:
        metrics = tracker.run_metrics(run_id)
    except Exception as err:
        raise ExportError(f"MLflow run {run_id!r} not found in {uri}: {str(err).splitlines()[0][:200]}") from None
    with tempfile.TemporaryDirectory(prefix="paradis-deploy-") as d:
        try:
            path = tracker.download(run_id, "checkpoint/checkpoint.pt", d)
        except Exception as err:
            raise ExportError(
                f"MLflow run {run_id!r} has no checkpoint artifact (checkpoint/checkpoint.pt): "
                f"{str(err).splitlines()[0][:200]}"
            ) from None
        trained = load_trained(path, accuracy=accuracy_from_metrics(metrics), **kwargs)
    trained.source = f"mlflow run {run_id} ({uri})"
    return trained


def _load(args: argparse.Namespace) -> TrainedModel:
    kwargs = {"model_name": args.model, "input_size": args.input_size}
    if args.wide_factor is not None:
        kwargs["wide_factor"] = args.wide_factor
    if args.run_id:
        return load_from_mlflow(args.run_id, args.tracking_uri, **kwargs)
    return load_trained(args.checkpoint, **kwargs)


# --- commands --------------------------------------------------------------------------------------
def _export(args: argparse.Namespace) -> int:
    trained = _load(args)
    if args.dataset:
        trained.dataset = args.dataset
    if args.threads:
        torch.set_num_threads(args.threads)
    edge = EdgeOptions(
        formats=tuple(dict.fromkeys(args.format or ())),
        quantize=args.quantize,
        test_images=args.test_images,
        calibration_batches=args.calibration_batches,
        batch_size=args.calibration_batch_size,
        data_root=args.data_root,
        threads=args.threads,
    )
    t0 = time.perf_counter()
    m = export_switch(trained, args.switch, args.output, programs=not args.no_programs, edge=edge)
    seconds = time.perf_counter() - t0
    acc = "unknown" if m.accuracy is None else f"{100 * m.accuracy:.2f} %"
    print(
        f"exported switch {m.switch} of {trained.source} to {args.output} in {seconds:.1f} s: top-1 {acc}, "
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
    return 0


def _plan(args: argparse.Namespace) -> int:
    devices = [parse_device(t) for t in args.device] or [Device(f"device{i}") for i in range(args.devices)]
    if args.table:
        table = read_table(args.table)
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        table = switch_table(_load(args), args.switches, measure_batch=args.measure_batch)
    if args.save_table:
        Path(args.save_table).write_text(json.dumps([o.as_dict() for o in table], indent=1) + "\n")
    p = plan(
        devices,
        args.budget_ms / 1e3,
        table,
        macs_per_second=args.macs_per_second,
        overhead_s=args.overhead_ms / 1e3,
    )
    print(p.explain())
    if args.json:
        print(
            json.dumps(
                {
                    "switch": str(p.switch),
                    "accuracy": p.accuracy,
                    "latency_s": p.latency_s,
                    "assignment": [a.device for a in p.assignment],
                }
            )
        )
    return 0


def _serve_bench(args: argparse.Namespace) -> int:
    import ray

    trained = _load(args)
    switches = [trained.model.resolve(s) for s in (args.switch or [str(trained.model.bn_switches()[0])])]
    n = args.devices or max(len(s) for s in switches)
    owns_ray = not ray.is_initialized()
    if owns_ray:
        if args.address:
            ray.init(address=args.address)
        else:
            ray.init(
                num_cpus=max(n * args.threads, 1),
                num_gpus=n * args.gpus_per_device or None,
                include_dashboard=False,
                log_to_driver=False,
            )
    pool = None
    try:
        pool = DevicePool(n, threads=args.threads, gpus_per_device=args.gpus_per_device)
        t0 = time.perf_counter()
        pool.load_full(trained, switches[0])
        print(f"{n} device(s), {args.threads} thread(s) each; full model loaded in {time.perf_counter() - t0:.2f} s")
        x = torch.randn(args.batch, *trained.input_size)
        for s in switches:
            pool.set_switch(s)
            got = pool(x)
            with torch.no_grad():
                want = trained.model.eval()(x, s)
            diff = (got - want).abs().max().item()
            lat = measure_latency(lambda: pool(x), warmup=args.warmup, repeats=args.iters)
            loads = sum(i["loads"] for i in pool.info().values())
            print(
                f"switch {s} on {', '.join(pool.assignment)}: median {1e3 * lat:.3f} ms per batch of {args.batch}, "
                f"{args.batch / lat:.0f} images/s, max |pool - in-process| = {diff:.2e}, weight loads so far {loads}"
            )
    finally:
        if pool is not None:  # on a cluster given by --address the actors would otherwise outlive the command
            pool.shutdown()
        if owns_ray:
            ray.shutdown()
    return 0


def _add_source(p: argparse.ArgumentParser, required: bool = True) -> None:
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--checkpoint", help="checkpoint.pt of paradis.engine, a model.pt, or a folder holding one")
    src.add_argument("--run-id", help="an MLflow trial run (its checkpoint artifact and acc/* metrics)")
    p.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else $PARADIS_HOME/mlflow.db)")
    p.add_argument("--model", help="registry name, for a bare state dict (model.pt)")
    p.add_argument("--wide-factor", type=float, help="for a bare state dict (default 1.2)")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="default: from the data set")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestration.deploy", description=__doc__.split("::")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write one file per device, programs and manifest.json for a switch")
    _add_source(e)
    e.add_argument("--switch", required=True, help='e.g. "[0.5, 0.5]"')
    e.add_argument("--output", required=True, help="folder for device*.pt, device*.pt2, fusion.pt, manifest.json")
    e.add_argument("--no-programs", action="store_true", help="skip the torch.export programs")
    e.add_argument(
        "--format",
        action="append",
        choices=FORMATS,
        help="also write device*.onnx (ONNX Runtime) or device*.pte (ExecuTorch, XNNPACK); repeatable",
    )
    e.add_argument("--quantize", choices=QUANTIZATIONS, help="int8: also device*.int8.onnx (static, QDQ)")
    e.add_argument(
        "--test-images", type=int, help="test images that measure each format (default: the whole split; 0: none)"
    )
    e.add_argument(
        "--calibration-batches", type=int, help="int8 calibration batches (default: the run's BN calibration)"
    )
    e.add_argument("--calibration-batch-size", type=int, help="default: the run's calibration batch size")
    e.add_argument("--data-root", help="data folder (default: the run's data.root; Fashion-MNIST: Debian's)")
    e.add_argument("--dataset", help="the data set, for a bare state dict (e.g. fashion-mnist)")
    e.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: their own)")
    e.set_defaults(fn=_export)
    p = sub.add_parser("plan", help="choose the switch and device assignment for a latency budget")
    _add_source(p, required=False)
    p.add_argument("--table", help="JSON rows {switch, accuracy, device_macs, device_params[, device_seconds]}")
    p.add_argument("--device", action="append", default=[], help="NAME[:SPEED[:MEMORY]], repeated; e.g. gpu0:1:2GB")
    p.add_argument("--devices", type=int, default=2, help="that many equal devices, without --device")
    p.add_argument("--budget-ms", type=float, required=True)
    p.add_argument("--measure-batch", type=int, help="time each sub-network here at this batch size")
    p.add_argument("--threads", type=int, default=1, help="torch threads while measuring")
    p.add_argument("--macs-per-second", type=float, help="reference device throughput, for costs from MACs")
    p.add_argument("--overhead-ms", type=float, default=0.0, help="added to every switch (transfer, fusion)")
    p.add_argument("--switches", nargs="+", help="consider only these (default: all with BN statistics)")
    p.add_argument("--save-table", help="write the table used to this JSON file")
    p.add_argument("--json", action="store_true", help="also print the plan as one JSON line")
    p.set_defaults(fn=_plan)
    b = sub.add_parser("serve-bench", help="run switches on a Ray device pool: equivalence, latency, throughput")
    _add_source(b)
    b.add_argument("--switch", action="append", help="repeat to switch at run time (no reload)")
    b.add_argument("--devices", type=int, help="actors (default: the largest switch's sub-networks)")
    b.add_argument("--threads", type=int, default=1, help="CPU threads per actor")
    b.add_argument("--gpus-per-device", type=float, default=0.0)
    b.add_argument("--batch", type=int, default=64)
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--iters", type=int, default=30)
    b.add_argument("--address", help="an existing Ray cluster (default: a local one)")
    b.set_defaults(fn=_serve_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "plan" and not (args.table or args.checkpoint or args.run_id):
        print("deploy plan: error: give --table, --checkpoint or --run-id", file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except (ValueError, PlanError, ExportError, DeviceFailure) as err:
        print(f"deploy {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

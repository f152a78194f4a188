"""The command line of deploy: ``python -m orchestration.deploy <command> ...`` (``paradis-deploy``).

Foreseeable bad input (a value out of bounds, a damaged checkpoint, a hostile manifest, a folder that
would be overwritten, a missing Ray resource) ends the command with one line on stderr,
``deploy <command>: error: <what>``, and exit code 2; never a traceback. An unforeseen failure is one
line too (exit 1), with the traceback when ``PARADIS_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from orchestration.deploy.checks import (
    MAX_BATCH,
    MAX_DEVICES,
    MAX_REPEATS,
    MAX_THREADS,
    CommandError,
    float_in,
    int_in,
    run_id_arg,
    switch_arg,
)
from orchestration.deploy.commands import export_command, plan_command, serve_bench_command, verify_command
from orchestration.deploy.pool import DeviceFailure
from orchestration.deploy.profile import profile_devices_command
from orchestration.deploy.registry import DEFAULT_EXPERIMENT, alias_arg, model_uri_arg, name_arg, register_command
from paradis.deploy import ExportError, PlanError
from paradis.deploy.latency import RUNTIMES, STATISTICS
from paradis.deploy.manifest import MAX_IMAGE_SIDE
from paradis.deploy.onnx import FORMATS, QUANTIZATIONS

COMMANDS = ("export", "plan", "serve-bench", "verify", "profile-devices", "register")
MAX_MESSAGE = 1500  # characters of one error line


MODEL_URI_HELP = "a registered export: models:/NAME@ALIAS or models:/NAME/VERSION (see register)"


class UsageError(Exception):
    """An argument the parser refused (argparse would print usage and exit)."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors become :class:`UsageError` (one line, printed by :func:`main`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_source(p: argparse.ArgumentParser, required: bool = True, model_uri: str | None = "one") -> None:
    """The trained model's options; ``model_uri``: ``"one"`` or ``"many"`` registered versions, or none."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--checkpoint", help="checkpoint.pt of paradis.engine, a model.pt, or a folder holding one")
    src.add_argument("--run-id", type=run_id_arg, help="an MLflow trial run (its checkpoint and acc/* metrics)")
    if model_uri:
        action = "append" if model_uri == "many" else "store"
        src.add_argument("--model-uri", type=model_uri_arg, action=action, help=MODEL_URI_HELP)
    else:
        p.set_defaults(model_uri=None)
    p.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else $PARADIS_HOME/mlflow.db)")
    p.add_argument("--model", help="registry name, for a bare state dict (model.pt)")
    p.add_argument("--wide-factor", type=float_in(1e-3, 16.0), help="for a bare state dict (default 1.2)")
    side = int_in(1, MAX_IMAGE_SIDE)
    p.add_argument("--input-size", type=side, nargs=3, metavar=("C", "H", "W"), help="default: from the data set")


def add_export(sub) -> None:
    e = sub.add_parser("export", help="write one file per device, programs and manifest.json for a switch")
    add_source(e)
    e.add_argument("--switch", type=switch_arg, help='e.g. "[0.5, 0.5]" (with --model-uri: the version\'s)')
    e.add_argument("--output", required=True, help="a new or empty folder (an earlier export with --force)")
    e.add_argument("--force", action="store_true", help="replace the export in --output (only its listed files)")
    e.add_argument("--no-programs", action="store_true", help="skip the torch.export programs")
    e.add_argument("--format", action="append", choices=FORMATS, help="also device*.onnx or device*.pte; repeatable")
    e.add_argument("--quantize", choices=QUANTIZATIONS, help="int8: also device*.int8.onnx (static, QDQ)")
    e.add_argument("--test-images", type=int_in(0, 10_000_000), help="images that measure each format (0: none)")
    e.add_argument("--calibration-batches", type=int_in(1, 100_000), help="int8 calibration batches")
    e.add_argument("--calibration-batch-size", type=int_in(1, MAX_BATCH), help="default: the run's")
    e.add_argument("--data-root", help="data folder (default: the run's data.root; Fashion-MNIST: Debian's)")
    e.add_argument("--dataset", help="the data set, for a bare state dict (e.g. fashion-mnist)")
    e.add_argument("--threads", type=int_in(1, MAX_THREADS), help="torch and ONNX Runtime threads")
    e.set_defaults(fn=export_command)


def add_plan(sub) -> None:
    p = sub.add_parser("plan", help="choose the switch and device assignment for a latency budget")
    add_source(p, required=False, model_uri="many")
    p.add_argument("--table", help="JSON rows {switch, accuracy, device_macs, device_params[, device_seconds]}")
    p.add_argument("--device", action="append", default=[], help="NAME[:SPEED[:MEMORY]], repeated; e.g. gpu0:1:2GB")
    p.add_argument("--devices", type=int_in(1, MAX_DEVICES), help="that many equal devices (default 2)")
    p.add_argument(
        "--latency-table",
        action="append",
        help="a device's table from profile-devices (or a folder of them), repeated: measured costs per device",
    )
    p.add_argument("--latency-stat", choices=STATISTICS, default="p95", help="which latency of the tables (p95)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch", help="whose timings of the tables (torch)")
    p.add_argument("--budget-ms", type=float_in(0.0, 1e9, low_open=True), required=True)
    p.add_argument("--measure-batch", type=int_in(1, MAX_BATCH), help="time each sub-network here at this batch")
    p.add_argument("--threads", type=int_in(1, MAX_THREADS), default=1, help="torch threads while measuring")
    p.add_argument("--macs-per-second", type=float_in(0.0, 1e30, low_open=True), help="reference throughput")
    p.add_argument("--overhead-ms", type=float_in(0.0, 1e9), default=0.0, help="added to every switch")
    p.add_argument("--switches", nargs="+", type=switch_arg, help="consider only these (default: all with BN stats)")
    p.add_argument("--save-table", help="write the table used to this JSON file")
    p.add_argument("--json", action="store_true", help="also print the plan as one JSON line")
    p.set_defaults(fn=plan_command)


def add_serve_bench(sub) -> None:
    b = sub.add_parser("serve-bench", help="run switches on a Ray device pool: equivalence, latency, throughput")
    add_source(b)
    b.add_argument("--switch", action="append", type=switch_arg, help="repeat to switch at run time (no reload)")
    b.add_argument("--devices", type=int_in(1, MAX_DEVICES), help="actors (default: the widest switch's)")
    b.add_argument("--threads", type=int_in(1, MAX_THREADS), default=1, help="CPU threads per actor")
    b.add_argument("--gpus-per-device", type=float_in(0.0, 64.0), default=0.0)
    b.add_argument("--batch", type=int_in(1, MAX_BATCH), default=64)
    b.add_argument("--warmup", type=int_in(0, MAX_REPEATS), default=5)
    b.add_argument("--iters", type=int_in(1, MAX_REPEATS), default=30)
    b.add_argument("--address", help="an existing Ray cluster (default: a local one)")
    b.set_defaults(fn=serve_bench_command)


def add_profile_devices(sub) -> None:
    d = sub.add_parser("profile-devices", help="time every sub-network on each named device: latency tables")
    add_source(d, model_uri=None)
    d.add_argument("--device", action="append", default=[], help="a device NAME (Ray custom resource), repeated")
    d.add_argument("--switches", nargs="+", type=switch_arg, help="default: every switch with BN statistics")
    d.add_argument("--output", required=True, help="folder for one <device>.json latency table per device")
    d.add_argument("--force", action="store_true", help="replace tables already in --output")
    d.add_argument("--batch", type=int_in(1, MAX_BATCH), default=1, help="images per call (default 1)")
    d.add_argument("--warmup", type=int_in(0, MAX_REPEATS), default=5)
    d.add_argument("--repeats", type=int_in(2, MAX_REPEATS), default=30, help="timed calls (p50, p95 over them)")
    d.add_argument("--threads", type=int_in(1, MAX_THREADS), default=1, help="CPU threads per device actor")
    d.add_argument("--export", action="append", help="an export folder with .onnx files to time (repeatable)")
    d.add_argument("--no-onnx", action="store_true", help="torch only (no ONNX export, no ONNX Runtime)")
    d.add_argument(
        "--call-timeout-s", type=float_in(0.0, 86400.0, low_open=True), help="a device answering later fails"
    )
    d.add_argument("--address", help="an existing Ray cluster (default: a local one with the devices' resources)")
    d.set_defaults(fn=profile_devices_command)


def add_register(sub) -> None:
    r = sub.add_parser("register", help="export a switch and register it as an MLflow model version")
    add_source(r, model_uri=None)
    r.add_argument("--switch", required=True, type=switch_arg, help='e.g. "[0.5, 0.5]"')
    r.add_argument("--name", required=True, type=name_arg, help="the registered model's name")
    r.add_argument("--alias", type=alias_arg, help="point this alias at the new version (e.g. prod)")
    r.add_argument("--new-run", action="store_true", help="log the export to a new run, not to --run-id's")
    r.add_argument(
        "--experiment", default=DEFAULT_EXPERIMENT, type=_experiment, help="of a new run (default paradis-deploy)"
    )
    r.add_argument("--no-programs", action="store_true", help="no device*.pt2 (trusted-only) in the version")
    r.add_argument("--format", action="append", choices=FORMATS, help="also device*.onnx / device*.pte")
    r.add_argument("--quantize", choices=QUANTIZATIONS, help="int8: also device*.int8.onnx")
    r.add_argument("--test-images", type=int_in(0, 10_000_000), help="images that measure each format")
    r.add_argument("--threads", type=int_in(1, MAX_THREADS), help="torch and ONNX Runtime threads")
    r.set_defaults(fn=register_command, calibration_batches=None, calibration_batch_size=None)
    r.set_defaults(data_root=None, dataset=None)


def add_verify(sub) -> None:
    v = sub.add_parser("verify", help="check an export folder: its manifest and every file's SHA-256")
    v.add_argument("folder", help="the export folder (manifest.json and the files it names)")
    v.set_defaults(fn=verify_command)


def _experiment(value: str) -> str:
    from orchestration.spec import check_experiment_name

    try:
        return check_experiment_name(value, "--experiment")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m orchestration.deploy", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in (add_export, add_plan, add_serve_bench, add_profile_devices, add_register, add_verify):
        add(sub)
    return parser


def one_line(text: str) -> str:
    """``text`` on one line of at most :data:`MAX_MESSAGE` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 20] + f"... ({len(flat)} chars)"


def _command_of(argv: list[str]) -> str:
    word = next((a for a in argv if not a.startswith("-")), None)
    return f"deploy {word}" if word in COMMANDS else "deploy"


def main(argv: list[str] | None = None) -> int:
    """Run one deploy command; 0 on success, 2 on bad input (one error line), 1 on an unforeseen failure."""
    argv = sys.argv[1:] if argv is None else list(argv)
    where = _command_of(argv)
    try:
        args = build_parser().parse_args(argv)
        return args.fn(args)
    except UsageError as err:
        return _fail(where, str(err), 2)
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except (CommandError, ExportError, PlanError, DeviceFailure, ValueError, OSError) as err:
        return _fail(where, str(err) or type(err).__name__, 2)
    except RuntimeError as err:  # TrackingError, Ray's refusals
        return _fail(where, f"{type(err).__name__}: {err}", 2)
    except KeyboardInterrupt:
        return _fail(where, "interrupted", 130)
    except Exception as err:
        if os.environ.get("PARADIS_DEBUG") == "1":
            raise
        return _fail(where, f"unexpected {type(err).__name__}: {err} (PARADIS_DEBUG=1 shows the traceback)", 1)


def _fail(where: str, message: str, code: int) -> int:
    print(f"{where}: error: {one_line(message)}", file=sys.stderr)
    return code

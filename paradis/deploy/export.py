"""Export of one switch for deployment: a file per device and a manifest.

``export_switch(model, switch, out_dir, input_size=...)`` writes, for sub-network ``i`` of the switch:

- ``device{i}.pt``: its state dict only (its slice of every weight and the switch's BN statistics),
  about its share of the parameters; read back with :func:`load_subnetwork` (needs this package);
- ``device{i}.pt2``: the same sub-network as a ``torch.export`` program with a dynamic batch size,
  which loads with plain torch (``torch.export.load(path).module()``), without this package;

- with :class:`~paradis.deploy.onnx.EdgeOptions`: ``device{i}.onnx``, ``device{i}.int8.onnx`` and
  ``device{i}.pte`` for ONNX Runtime and ExecuTorch (:mod:`paradis.deploy.onnx`), each measured on the
  test split;

and ``fusion.pt`` (``{"bias": tensor}``: the fusion is the sum of the partial outputs plus this bias,
added once; the manifest repeats the bias as numbers) and ``manifest.json`` (:class:`Manifest`): switch,
fusion rule, input specification, the switch's accuracy and multiply-adds when known, the per-device
multiply-adds, parameters and files, and the size and SHA-256 of every file it names.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import paradis.deploy.onnx as edge_formats
from paradis.costs import profile
from paradis.data import normalization
from paradis.data.registry import dataset_info, list_datasets
from paradis.deploy.files import (
    MAX_JSON_BYTES,
    MAX_MANIFEST_BYTES,
    ExportError,
    check_digest_entry,
    check_name,
    count,
    finite_number,
    member_path,
    parse_json,
    quote,
    read_json,
    read_limited,
    read_verified,
)
from paradis.deploy.onnx import EdgeOptions, RunData, Runner
from paradis.deploy.planner import SwitchOption
from paradis.deploy.timing import measure_latency
from paradis.engine.metrics import measures_by_switch
from paradis.models import ParaDiSModel, create_model, list_models
from paradis.models.base import Fusion, SubNetwork
from paradis.switch import ROUNDINGS, Switch, SwitchLike, parse_switch

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 2  # 2: edge artifacts, digests of every file, the fusion bias as numbers
READABLE_FORMATS = (1, 2)
FUSION_RULE = "sum of the partial outputs of all devices, plus the bias (fusion.pt, or fusion.bias here) added once"
CALIBRATION_SOURCE = (
    "the training images that calibrate BN in paradis.engine (the same subset of the run's training split)"
)

MAX_CLASSES = 1_000_000  # a manifest asking for more would make the loader allocate absurd layers
MAX_IN_CHANS = 64
MAX_IMAGE_SIDE = 8192
ARTIFACT_KINDS = ("onnx", "onnx-int8", "pte")


# --- the trained model -----------------------------------------------------------------------------
@dataclass
class TrainedModel:
    """A trained ParaDiS model with what deployment needs to know about it."""

    model: ParaDiSModel
    model_name: str
    num_classes: int
    in_chans: int
    wide_factor: float
    input_size: tuple[int, int, int]
    dataset: str | None = None
    # top-1 accuracy (fraction) of each evaluated switch, keyed by the canonical switch string
    accuracy: dict[str, float] = field(default_factory=dict)
    source: str = ""
    # the run configuration (RunConfig as a dict) when known: how its data set, BN calibration images
    # and test split were made, which the edge export reuses (int8 calibration, test accuracy)
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        model: ParaDiSModel,
        model_name: str,
        input_size: Sequence[int],
        *,
        accuracy: Mapping[str, float] | None = None,
        dataset: str | None = None,
        source: str = "in-memory model",
        config: Mapping[str, Any] | None = None,
    ) -> TrainedModel:
        """Wrap a model in memory (``model_name`` is its registry name, as ``create_model`` takes;
        ``config``: the run configuration as a dict, whose data and calibration the edge export reuses)."""
        num_classes, in_chans = _shapes_from_state(model.state_dict(), source)
        acc = {str(parse_switch(k)): float(v) for k, v in (accuracy or {}).items()}
        size = tuple(int(v) for v in input_size)
        wf = model.wide_factor
        return cls(model, model_name, num_classes, in_chans, wf, size, dataset, acc, source, dict(config or {}))  # type: ignore[arg-type]

    def model_args(self) -> dict[str, Any]:
        return {
            "name": self.model_name,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "wide_factor": self.wide_factor,
            "rounding": self.model.rounding,
        }


def build_model(args: Mapping[str, Any]) -> ParaDiSModel:
    """The untrained model of :meth:`TrainedModel.model_args` (or a manifest's ``model``; a manifest
    written before the rounding option used the shared rule)."""
    return create_model(
        args["name"],
        num_classes=int(args["num_classes"]),
        wide_factor=float(args["wide_factor"]),
        in_chans=int(args["in_chans"]),
        rounding=str(args.get("rounding", "paradis")),
    )


def _shapes_from_state(state: Mapping[str, torch.Tensor], where: str) -> tuple[int, int]:
    """``(num_classes, in_chans)`` read off the classifier and the stem of a state dict."""
    try:
        return int(state["head.weight"].shape[0]), int(state["stem.weight"].shape[1])
    except (KeyError, AttributeError, IndexError):
        raise ExportError(
            f"{quote(where)}: not the state dict of a ParaDiS classifier (no head.weight / stem.weight); only "
            "classifiers (mobilenet_v1*, resnet*) can be deployed"
        ) from None


def accuracy_from_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """``{"[0.5, 0.5]": 0.89, ...}`` from metrics named ``acc/<switch slug>`` (trainer, MLflow)."""
    return measures_by_switch(metrics, "acc")


def input_size_for(dataset: str | None, in_chans: int, image_size: int | None = None) -> tuple[int, int, int] | None:
    """The input a data set gives its models (from the data set registry; ImageNet at its crop size)."""
    if dataset not in list_datasets() or dataset_info(dataset).task != "classification":
        return None
    if dataset == "imagenet" and image_size:
        return (in_chans, image_size, image_size)
    return (in_chans, *dataset_info(dataset).input_size[1:])


def load_trained(
    path: str | os.PathLike,
    *,
    model_name: str | None = None,
    wide_factor: float | None = None,
    input_size: Sequence[int] | None = None,
    accuracy: Mapping[str, float] | None = None,
) -> TrainedModel:
    """A model from a file written by :mod:`paradis.engine` (``checkpoint.pt``: model, configuration
    and metrics history) or a bare state dict (``model.pt`` of ``python -m paradis train --output``:
    then ``model_name`` is required, and accuracies are read from ``history.json`` beside it).

    Read with ``weights_only=True`` (no code runs); every part of the file is checked for its type, so a
    damaged or foreign file is one :class:`ExportError` naming what is wrong."""
    p = _model_file(Path(path))
    where = quote(str(p))
    config, state, history = _checkpoint_parts(_read_checkpoint(p), p)
    name = model_name or config["model"].get("name")
    if not name:
        raise ExportError(f"{where} is a bare state dict: give the model name (e.g. mobilenet_v1_small)")
    if not isinstance(name, str) or name not in list_models():
        raise ExportError(f"{where}: model {quote(name)} is not a registered model; known: {', '.join(list_models())}")
    wf = wide_factor if wide_factor is not None else config["training"].get("wide_factor", 1.2)
    wf = _checked(finite_number, wf, f"{where}: wide factor", low=1e-3, high=16.0)
    num_classes, in_chans = _shapes_from_state(state, str(p))
    dataset, size = _input_of(config["data"], in_chans, input_size, where)
    rounding = config["model"].get("rounding") or "paradis"  # checkpoints before the option: the shared rule
    if rounding not in ROUNDINGS:
        raise ExportError(f"{where}: config.model.rounding {quote(rounding)} is not one of {', '.join(ROUNDINGS)}")
    model = _model_with_state(name, num_classes, wf, in_chans, state, where, rounding)
    acc: dict[str, float] = {}
    for metrics in history:  # the last evaluation of each switch wins
        acc.update(accuracy_from_metrics(metrics))
    acc.update({str(parse_switch(k)): v for k, v in (accuracy or {}).items()})
    for s, v in acc.items():
        _checked(finite_number, v, f"{where}: top-1 accuracy of switch {s}", low=0.0, high=1.0)
    return TrainedModel(model, name, num_classes, in_chans, wf, size, dataset, acc, str(p), config)


def _checked(check: Any, value: object, what: str, **bounds: Any) -> Any:
    """``check(value, what, **bounds)`` with its ``ValueError`` as an :class:`ExportError`."""
    try:
        return check(value, what, **bounds)
    except ExportError:
        raise
    except ValueError as err:
        raise ExportError(str(err)) from None


def _model_file(p: Path) -> Path:
    """``p``, or the ``checkpoint.pt`` / ``model.pt`` in folder ``p``."""
    if p.is_dir():
        found = [p / n for n in ("checkpoint.pt", "model.pt") if (p / n).is_file()]
        if not found:
            raise ExportError(f"{quote(str(p))} holds neither checkpoint.pt nor model.pt")
        p = found[0]
    if not p.is_file():
        raise ExportError(f"model file {quote(str(p))} does not exist or is not a file")
    return p


def _read_checkpoint(p: Path) -> dict:
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise ExportError(f"{quote(str(p))} cannot be read ({type(err).__name__}: {first})") from None
    if not isinstance(blob, dict):
        raise ExportError(f"{quote(str(p))} is not a checkpoint or a state dict (a {type(blob).__name__})")
    return blob


def _checkpoint_parts(blob: dict, p: Path) -> tuple[dict, dict, list]:
    """``(config, state dict, history)`` of a checkpoint or a bare state dict, each type-checked."""
    where = quote(str(p))
    is_checkpoint = any(k in blob for k in ("model", "config", "history"))
    state = blob.get("model") if is_checkpoint else blob
    config = (blob.get("config") if is_checkpoint else None) or {}
    history = blob.get("history") if is_checkpoint else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{where}: its model is not a state dict of tensors")
    if not isinstance(config, dict):
        raise ExportError(f"{where}: its config is not a mapping (a {type(config).__name__})")
    config = dict(config)
    for section in ("model", "training", "data"):
        config[section] = config.get(section) or {}
        if not isinstance(config[section], dict):
            raise ExportError(f"{where}: config.{section} is not a mapping ({quote(config[section])})")
    if history is None and (p.parent / "history.json").is_file():
        history = read_json(p.parent / "history.json", "history", MAX_JSON_BYTES)
    return config, state, _checked_history(history, where)


def _checked_history(history: object, where: str) -> list[dict[str, float]]:
    """A metrics history: a list of ``{name: number}``; anything else is an error naming it."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise ExportError(f"{where}: its history is not a list of metrics ({quote(history)})")
    for i, metrics in enumerate(history):
        if not isinstance(metrics, dict) or not all(isinstance(k, str) for k in metrics):
            raise ExportError(f"{where}: history[{i}] is not a mapping of metric names ({quote(metrics)})")
        for k, v in metrics.items():
            if k.startswith("acc/") and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ExportError(f"{where}: history[{i}][{quote(k)}] = {quote(v)} is not a number")
    return history


def _input_of(
    data: dict, in_chans: int, input_size: Sequence[int] | None, where: str
) -> tuple[str | None, tuple[int, int, int]]:
    """The data set name and the ``(C, H, W)`` input: given, else the data set's."""
    dataset = data.get("name")
    if dataset is not None and not isinstance(dataset, str):
        raise ExportError(f"{where}: config.data.name {quote(dataset)} is not a data set name")
    if input_size:
        size = tuple(input_size)
    else:
        image_size = data.get("image_size")
        if image_size is not None:
            _checked(count, image_size, f"{where}: config.data.image_size", low=1, high=MAX_IMAGE_SIDE)
        size = input_size_for(dataset, in_chans, image_size)
    if size is None:
        raise ExportError(f"{where}: the input size is unknown (data set {quote(dataset)}); give it as C H W")
    if len(size) != 3:
        raise ExportError(f"{where}: input size {quote(size)} is not C H W")
    for v in size:
        _checked(count, v, "input size", low=1, high=MAX_IMAGE_SIDE)
    if size[0] != in_chans:
        raise ExportError(f"{where}: input size {quote(size)} has {size[0]} channels; the model takes {in_chans}")
    return dataset, size  # type: ignore[return-value]


def _model_with_state(
    name: str, num_classes: int, wf: float, in_chans: int, state: dict, where: str, rounding: str = "paradis"
) -> ParaDiSModel:
    try:
        model = create_model(name, num_classes=num_classes, wide_factor=wf, in_chans=in_chans, rounding=rounding)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ExportError(f"{where} does not fit model {name!r}: {first}") from None
    return model.eval()


# --- the manifest ----------------------------------------------------------------------------------
@dataclass
class DeviceEntry:
    index: int
    width: float
    channels: str  # the fraction range of every layer it owns, e.g. "[0.5, 1.0)"
    macs: int
    params: int
    state_file: str
    program_file: str | None
    file_bytes: int
    # edge files of this device, by kind: {"onnx": "device0.onnx", "onnx-int8": ..., "pte": ...}
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass
class Manifest:
    """What a deployment needs to know, as ``manifest.json``."""

    switch: str
    fusion: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]
    model: dict[str, Any]
    macs: int
    max_device_macs: int
    params: int
    accuracy: float | None
    devices: list[DeviceEntry]
    source: str = ""
    format: int = MANIFEST_FORMAT
    # every file the manifest names: {name: {"bytes": n, "sha256": hex digest}}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # per edge artifact kind: how it was made and how to run it (input/output names, quantization)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # top-1 of the fused output of each kind ("torch", "onnx", "onnx-int8", "pte") on the test split
    evaluation: dict[str, Any] | None = None

    @property
    def parsed_switch(self) -> Switch:
        return parse_switch(self.switch)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "manifest") -> Manifest:
        """A manifest from its JSON text (parsed with ``json``: nothing in it runs), checked throughout:
        types, bounds, and file names that stay inside the export folder."""
        data = parse_json(text.encode("utf-8") if isinstance(text, str) else text, where)
        if not isinstance(data, dict):
            kind = type(data).__name__
            raise ExportError(f"{where}: not a valid ParaDiS manifest (a JSON object expected, got {kind})")
        if data.get("format") not in READABLE_FORMATS:
            raise ExportError(f"{where}: format {quote(data.get('format'))} is not one of {READABLE_FORMATS}")
        try:
            if not isinstance(data.get("devices"), list):
                raise TypeError(f"devices {quote(data.get('devices'))} is not a list")
            devices = [DeviceEntry(**d) if isinstance(d, dict) else _not_object(d) for d in data["devices"]]
            manifest = cls(**{**data, "devices": devices})
            if not isinstance(manifest.switch, str):
                raise TypeError(f"switch {quote(manifest.switch)} is not a string")
            parse_switch(manifest.switch)
            check_manifest(manifest)
        except ExportError as err:
            raise ExportError(f"{where}: {err}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            text = str(err).splitlines()[0][:300] if str(err) else ""
            raise ExportError(f"{where}: not a valid ParaDiS manifest ({type(err).__name__}: {text})") from None
        return manifest


def _not_object(value: object) -> DeviceEntry:
    raise TypeError(f"device entry {quote(value)} is not an object")


def check_manifest(m: Manifest) -> None:
    """Raise ``ValueError`` (or :class:`ExportError`) for a manifest that no export of this package writes."""
    if len(m.devices) != len(m.parsed_switch):
        raise ExportError(f"{len(m.devices)} devices for switch {m.switch}")
    _check_model_args(m.model)
    for i, d in enumerate(m.devices):
        _check_device(d, i)
    _check_fusion(m.fusion, m.model["num_classes"])
    _check_input(m.input, m.model["in_chans"])
    if not isinstance(m.files, dict) or not isinstance(m.artifacts, dict):
        raise TypeError("files and artifacts must be objects")
    for name, entry in m.files.items():
        check_name(name, "files")
        check_digest_entry(name, entry, "manifest")
    if m.accuracy is not None:
        finite_number(m.accuracy, "accuracy", low=0.0, high=1.0)
    for key in ("macs", "max_device_macs", "params"):
        count(getattr(m, key), key)


def _check_model_args(args: object) -> None:
    if not isinstance(args, dict):
        raise TypeError(f"model {quote(args)} is not an object")
    if args.get("name") not in list_models():
        raise ValueError(f"model name {quote(args.get('name'))} is not a registered model")
    count(args.get("num_classes"), "model.num_classes", low=1, high=MAX_CLASSES)
    count(args.get("in_chans"), "model.in_chans", low=1, high=MAX_IN_CHANS)
    finite_number(args.get("wide_factor"), "model.wide_factor", low=1e-3, high=16.0)
    if args.get("rounding", "paradis") not in ROUNDINGS:
        raise ValueError(f"model.rounding {quote(args.get('rounding'))} is not one of {', '.join(ROUNDINGS)}")


def _check_device(d: DeviceEntry, position: int) -> None:
    where = f"device {position}"
    if isinstance(d.index, bool) or d.index != position:
        raise ValueError(f"{where}: index {quote(d.index)} is not its position {position}")
    finite_number(d.width, f"{where}: width", low=0.0)
    for key in ("macs", "params", "file_bytes"):
        count(getattr(d, key), f"{where}: {key}")
    check_name(d.state_file, where)
    if d.program_file is not None:
        check_name(d.program_file, where)
    if not isinstance(d.artifacts, dict):
        raise TypeError(f"{where}: artifacts {quote(d.artifacts)} is not an object")
    for kind, name in d.artifacts.items():
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"{where}: unknown artifact kind {quote(kind)}; known: {', '.join(ARTIFACT_KINDS)}")
        check_name(name, where)


def _check_fusion(fusion: object, num_classes: int) -> None:
    if not isinstance(fusion, dict):
        raise TypeError(f"fusion {quote(fusion)} is not an object")
    check_name(fusion.get("file"), "fusion")
    bias = fusion.get("bias")
    if bias is None:
        return
    if not isinstance(bias, list) or len(bias) != num_classes:
        raise ValueError(f"fusion.bias is not a list of {num_classes} numbers (one per class)")
    for v in bias:
        finite_number(v, "fusion.bias entry")


def _check_input(spec: object, in_chans: int) -> None:
    if not isinstance(spec, dict):
        raise TypeError(f"input {quote(spec)} is not an object")
    shape = spec.get("shape")
    if not isinstance(shape, list) or len(shape) != 4 or shape[0] != "batch":
        raise ValueError(f'input.shape {quote(shape)} is not ["batch", C, H, W]')
    if count(shape[1], "input channels", low=1) != in_chans:
        raise ValueError(f"input.shape {quote(shape)}: {shape[1]} channels where the model takes {in_chans}")
    for side in shape[2:]:
        count(side, "input side", low=1, high=MAX_IMAGE_SIDE)


def read_manifest(folder: str | os.PathLike, *, expected_sha256: str | None = None) -> Manifest:
    """The checked manifest of an export folder: at most ``MAX_MANIFEST_BYTES`` of JSON, read without
    running anything; with ``expected_sha256`` (e.g. from a model registry) its digest must match."""
    if not Path(folder).is_dir():
        raise ExportError(f"{quote(str(folder))} is not an export folder (not a folder)")
    path = member_path(folder, MANIFEST_NAME, quote(str(folder)))
    if not path.is_file():
        raise ExportError(f"{quote(str(folder))} is not an export folder: it has no {MANIFEST_NAME}")
    data = read_limited(path, MAX_MANIFEST_BYTES, "manifest")
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ExportError(
            f"{path}: SHA-256 {digest[:16]}... is not the recorded {quote(expected_sha256, 40)}: "
            "the manifest was changed; not loaded"
        )
    return Manifest.from_json(data, str(path))


def named_files(manifest: Manifest) -> list[str]:
    """Every file a manifest names (fusion, then per device: state, program, edge artifacts)."""
    names = [manifest.fusion["file"]]
    for d in manifest.devices:
        names += [d.state_file] + ([d.program_file] if d.program_file else []) + list(d.artifacts.values())
    return list(dict.fromkeys(names))


def verify_export(folder: str | os.PathLike, manifest: Manifest | None = None) -> Manifest:
    """Check every file the manifest names against its recorded size and SHA-256 (nothing is loaded)."""
    manifest = manifest or read_manifest(folder)
    for name in named_files(manifest):
        read_verified(folder, name, manifest.files, quote(str(folder)))
    return manifest


def _verified(folder: str | os.PathLike, manifest: Manifest, name: str) -> bytes:
    return read_verified(folder, name, manifest.files, quote(str(folder)))


# --- export ----------------------------------------------------------------------------------------
def export_program(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """``net`` as a ``torch.export`` program whose batch size is dynamic."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(net, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))


def export_switch(
    trained: TrainedModel,
    switch: SwitchLike,
    out_dir: str | os.PathLike,
    *,
    programs: bool = True,
    edge: EdgeOptions | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Write the per-device files, ``fusion.pt`` and ``manifest.json`` of ``switch`` to ``out_dir``; with
    ``edge``, also the ONNX / int8 / ExecuTorch files of every device and their test-split top-1.

    ``out_dir`` must be new or empty; with ``overwrite`` it may hold an earlier export, whose listed files
    (and nothing else) are replaced. The export is written to a folder beside ``out_dir`` and moved in
    once complete, so a failed export leaves the old one as it was."""
    model = trained.model.eval()
    s = model.resolve(switch)
    if not model.has_bn_stats(s):
        raise ExportError(
            f"switch {s} has no BN statistics in this model (never trained or calibrated); "
            f"switches with statistics: {', '.join(map(str, model.bn_switches())) or 'none'}"
        )
    edge = edge or EdgeOptions()
    try:
        edge_formats.check_installed(edge)
    except ImportError as err:
        raise ExportError(str(err)) from None
    out = Path(out_dir).resolve()
    old_files = files_to_replace(out, overwrite)  # refused here, before any work, if work would be lost
    data = _edge_data(trained, edge)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        manifest = _write_export(trained, s, staging, programs, edge, data)
        _install(staging, out, old_files, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def copy_export(source: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Manifest:
    """Copy the export in ``source`` to ``out_dir``, every file checked against the manifest's digest
    first; ``out_dir`` as for :func:`export_switch` (new or empty; an earlier export with ``overwrite``)."""
    text = read_limited(member_path(source, MANIFEST_NAME, quote(str(source))), MAX_MANIFEST_BYTES, "manifest")
    manifest = verify_export(source, Manifest.from_json(text, str(Path(source) / MANIFEST_NAME)))
    out = Path(out_dir).resolve()
    old_files = files_to_replace(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        for name in named_files(manifest):
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(_verified(source, manifest, name))
        (staging / MANIFEST_NAME).write_bytes(
            read_limited(Path(source) / MANIFEST_NAME, MAX_MANIFEST_BYTES, "manifest")
        )
        _install(staging, out, old_files, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_export(
    trained: TrainedModel, s: Switch, out: Path, programs: bool, edge: EdgeOptions, data: RunData | None
) -> Manifest:
    """Every file of the export of ``s`` in folder ``out``, the manifest last."""
    model = trained.model
    extracted = model.extract(s)
    prof = profile(model, s, trained.input_size)
    example = torch.zeros(2, *trained.input_size)
    seconds: dict[str, float] = {}
    devices = []
    for i, net in enumerate(extracted.subnets):
        entry = _write_device(net, example, out, i, programs)
        lo, hi = s.offsets[i], s.offsets[i + 1]
        entry.width, entry.channels = s.widths[i], f"[{float(lo):g}, {float(hi):g})"
        entry.macs, entry.params = prof.device_macs[i], prof.device_params[i]
        calibration = data.calibration if data else []
        entry.artifacts = edge_formats.write_artifacts(net, example, out, i, edge, calibration, seconds)
        devices.append(entry)
    bias = extracted.fusion.bias
    bias = None if bias is None else bias.detach().clone()
    torch.save({"bias": bias}, out / "fusion.pt")
    manifest = _manifest(trained, s, prof, devices, bias)
    manifest.files = file_digests(out, manifest)  # before the evaluation, which loads verified files
    if edge.active:
        manifest.artifacts = _artifact_info(edge, data, seconds)
        if data is not None and data.test:
            manifest.evaluation = evaluate_export(out, manifest, data.test, edge.threads, extracted.subnets)
    (out / MANIFEST_NAME).write_text(manifest.to_json() + "\n")
    return manifest


def _entries(folder: Path) -> list[str]:
    """Every file (and empty folder, with a trailing ``/``) under ``folder``, as relative POSIX paths;
    symbolic links are entries, never followed."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        rel = Path(root).relative_to(folder)
        found += [(rel / n).as_posix() for n in files]
        found += [(rel / d).as_posix() for d in dirs if (Path(root) / d).is_symlink()]
        if not files and not dirs and Path(root) != folder:
            found.append(rel.as_posix() + "/")
    return sorted(found)


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(quote(n, 60) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def files_to_replace(out: Path, overwrite: bool) -> list[str]:
    """The files of the export already in ``out`` that a new export replaces; refuses a folder whose
    contents would be lost: not empty without ``overwrite``, or holding files its manifest does not list."""
    where = f"output folder {quote(str(out))}"
    if out.exists() and not out.is_dir():
        raise ExportError(f"output {quote(str(out))} is a file, not a folder")
    present = _entries(out) if out.is_dir() else []
    if not present:
        return []
    if not overwrite:
        raise ExportError(f"{where} is not empty ({_names(present)}); give --force to replace the export it holds")
    try:
        old = read_manifest(out)
    except ExportError as err:
        raise ExportError(f"{where} holds no readable export to replace ({str(err)[:300]}); nothing removed") from None
    listed = {*named_files(old), MANIFEST_NAME}
    unlisted = [n for n in present if n not in listed]
    if unlisted:
        raise ExportError(
            f"{where} holds files its manifest does not list: {_names(unlisted)}; nothing removed "
            "(move them away or choose another folder)"
        )
    return [n for n in present if n in listed]


def _install(staging: Path, out: Path, old_files: Sequence[str], manifest: Manifest) -> None:
    """Replace the old export's listed files in ``out`` by the new export's, the manifest last."""
    out.mkdir(exist_ok=True)
    for name in old_files:
        (out / name).unlink(missing_ok=True)
    for name in named_files(manifest):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, out / name)
    os.replace(staging / MANIFEST_NAME, out / MANIFEST_NAME)


def _write_device(net: SubNetwork, example: torch.Tensor, out: Path, index: int, programs: bool) -> DeviceEntry:
    """Device ``index``'s state file (and program): its entry, widths and costs still to be filled in."""
    state_file = f"device{index}.pt"
    torch.save(net.state_dict(), out / state_file)
    program_file = None
    if programs:
        program_file = f"device{index}.pt2"
        export_program(net, example, out / program_file)
    size = (out / state_file).stat().st_size
    return DeviceEntry(index, 0.0, "", 0, 0, state_file, program_file, size)


def _manifest(trained: TrainedModel, s: Switch, prof: Any, devices: list[DeviceEntry], bias: Any) -> Manifest:
    acc = trained.accuracy.get(str(s))
    norm = normalization(trained.dataset, trained.in_chans)
    return Manifest(
        switch=str(s),
        fusion={
            "rule": FUSION_RULE,
            "file": "fusion.pt",
            "op": "sum+bias",
            "bias": None if bias is None else [float(v) for v in bias.tolist()],
        },
        input={
            "shape": ["batch", *trained.input_size],
            "dtype": "float32",
            "layout": "NCHW",
            "dataset": trained.dataset,
            "mean": None if norm is None else list(norm[0]),
            "std": None if norm is None else list(norm[1]),
            "preprocessing": None if norm is None else _preprocessing(trained.dataset),
        },
        output={"shape": ["batch", trained.num_classes], "kind": "logits"},
        model=trained.model_args(),
        macs=prof.macs,
        max_device_macs=prof.max_device_macs,
        params=prof.params,
        accuracy=None if acc is None or not math.isfinite(acc) else acc,
        devices=devices,
        source=trained.source,
    )


def _preprocessing(dataset: str | None) -> str:
    first = "resized and centre-cropped as paradis.data's test transform, then " if dataset == "imagenet" else ""
    return first + "pixels scaled to [0, 1], then (x - mean) / std per channel"


def _edge_data(trained: TrainedModel, edge: EdgeOptions) -> RunData | None:
    """The run's calibration images (for int8) and test split (to measure the artifacts), when needed."""
    need_test = edge.active and edge.test_images != 0
    if not (edge.quantize or need_test):
        return None
    try:
        return edge_formats.run_data(trained.dataset, trained.config, edge, need_test=need_test)
    except (ValueError, OSError) as err:  # DataError is a ValueError
        raise ExportError(f"{trained.source}: the data for the edge export cannot be loaded: {err}") from None


def _artifact_info(edge: EdgeOptions, data: RunData | None, seconds: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """How each edge kind was made and is run (recorded in the manifest)."""
    names = {"input": edge_formats.INPUT_NAME, "output": edge_formats.OUTPUT_NAME}
    info: dict[str, dict[str, Any]] = {}
    if "onnx" in edge.kinds():
        info["onnx"] = {**names, "exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=True)"}
        info["onnx"]["runtime"] = "onnxruntime"
    if "onnx-int8" in edge.kinds() and data is not None:
        images = sum(int(b.shape[0]) for b in data.calibration)
        calibration = {"images": images, "batches": len(data.calibration), "source": CALIBRATION_SOURCE}
        info["onnx-int8"] = {**names, **edge_formats.QUANTIZATION_INFO, "calibration": calibration}
        info["onnx-int8"]["runtime"] = "onnxruntime"
    if "pte" in edge.kinds():
        info["pte"] = {"method": "forward", "partitioner": "XNNPACK", "max_batch": edge_formats.PTE_MAX_BATCH}
        info["pte"]["runtime"] = "executorch"
    for kind, value in info.items():
        value["export_seconds"] = round(seconds.get(kind, 0.0), 3)  # all devices together
    return info


def file_digests(folder: Path, manifest: Manifest) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file the manifest names."""
    files = {}
    for name in named_files(manifest):
        path = folder / name
        files[name] = {"bytes": path.stat().st_size, "sha256": edge_formats.sha256_of(path)}
    return files


def evaluate_export(
    folder: Path,
    manifest: Manifest,
    batches: Any,
    threads: int | None = None,
    subnets: Sequence[torch.nn.Module] | None = None,
) -> dict[str, Any]:
    """Top-1 of the fused output of every artifact kind of an export (and of the torch sub-networks,
    ``subnets``, as the reference) over ``(x, y)`` batches."""
    kinds = list(manifest.devices[0].artifacts)
    runners: dict[str, list[Runner]] = {"torch": list(subnets)} if subnets is not None else {}
    for kind in kinds:
        runners[kind] = [load_artifact(folder, d.index, kind, manifest, threads) for d in manifest.devices]
    bias = None if manifest.fusion.get("bias") is None else torch.tensor(manifest.fusion["bias"])
    top1: dict[str, float] = {}
    seconds: dict[str, float] = {}
    images = 0
    for kind, nets in runners.items():
        t0 = time.perf_counter()
        top1[kind], images = edge_formats.fused_top1(nets, bias, batches)
        seconds[kind] = round(time.perf_counter() - t0, 3)
    return {"split": "test", "images": images, "metric": "top-1", "top1": top1, "seconds": seconds}


# --- loading an export ---------------------------------------------------------------------------
def _device(folder: str | os.PathLike, index: int, manifest: Manifest | None) -> tuple[Manifest, DeviceEntry]:
    manifest = manifest or read_manifest(folder)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(manifest.devices):
        raise ExportError(f"{quote(str(folder))}: switch {manifest.switch} has no device {quote(index)}")
    return manifest, manifest.devices[index]


def _torch_load(data: bytes, where: str) -> Any:
    """``torch.load`` of verified bytes with ``weights_only=True``: tensors and plain containers only."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ExportError(f"{where} cannot be loaded: {first}") from None


def load_state(folder: str | os.PathLike, index: int, manifest: Manifest | None = None) -> dict[str, torch.Tensor]:
    """The state dict of device ``index``'s ``.pt`` file, once its digest matches the manifest."""
    manifest, d = _device(folder, index, manifest)
    where = quote(str(Path(folder) / d.state_file))
    state = _torch_load(_verified(folder, manifest, d.state_file), where)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{where} cannot be loaded: not a state dict of tensors")
    return state


def load_subnetwork(folder: str | os.PathLike, index: int, manifest: Manifest | None = None) -> SubNetwork:
    """Sub-network ``index`` of an export, from its state file alone (the package builds the skeleton);
    code-safe: the file's digest is checked, then it is read with ``weights_only=True``."""
    manifest, d = _device(folder, index, manifest)
    state = load_state(folder, index, manifest)
    skeleton = build_model(manifest.model).extract(manifest.switch, missing_stats_ok=True).subnets[index]
    try:
        skeleton.load_state_dict(state)
    except RuntimeError as err:
        where = quote(str(Path(folder) / d.state_file))
        raise ExportError(f"{where} cannot be loaded: {str(err).splitlines()[0][:200]}") from None
    return skeleton.eval()


def load_fusion(folder: str | os.PathLike, manifest: Manifest | None = None) -> Fusion:
    """The fusion (its bias) from ``fusion.pt``, digest checked, read with ``weights_only=True``."""
    manifest = manifest or read_manifest(folder)
    where = quote(str(Path(folder) / manifest.fusion["file"]))
    blob = _torch_load(_verified(folder, manifest, manifest.fusion["file"]), where)
    bias = blob.get("bias", "missing") if isinstance(blob, dict) else "missing"
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise ExportError(f"{where} is not a fusion file (no bias tensor)")
    return Fusion(bias)


def load_program(folder: str | os.PathLike, index: int, manifest: Manifest | None = None) -> torch.nn.Module:
    """The ``torch.export`` program of device ``index`` (plain torch; this package is not needed).

    Trusted files only: ``torch.export.load`` unpickles (weights marked ``use_pickle``, sample inputs),
    so a ``.pt2`` file can run code. The digest check refuses a file changed after the export, not a
    hostile export whose manifest records the hostile file's digest."""
    manifest, d = _device(folder, index, manifest)
    if d.program_file is None:
        raise ExportError(f"{quote(str(folder))} was exported without programs")
    data = _verified(folder, manifest, d.program_file)
    return torch.export.load(io.BytesIO(data)).module()


def artifact_bytes(folder: str | os.PathLike, index: int, kind: str, manifest: Manifest | None = None) -> bytes:
    """The verified bytes of device ``index``'s edge file of ``kind`` (e.g. to send to a remote device)."""
    manifest, d = _device(folder, index, manifest)
    name = d.artifacts.get(kind)
    if name is None:
        raise ExportError(
            f"{quote(str(folder))} has no {str(kind)[:40]} file for device {index} (exported without --format)"
        )
    return _verified(folder, manifest, name)


def load_artifact(
    folder: str | os.PathLike,
    index: int,
    kind: str = "onnx",
    manifest: Manifest | None = None,
    threads: int | None = None,
) -> Runner:
    """Device ``index``'s edge file of ``kind`` (``onnx``, ``onnx-int8``, ``pte``) as a function from a
    batch to its partial output, on ONNX Runtime or ExecuTorch; the runtime receives the verified bytes
    (so an ONNX file cannot pull in external data files)."""
    manifest, d = _device(folder, index, manifest)
    data = artifact_bytes(folder, index, kind, manifest)
    name = d.artifacts[kind]
    try:
        return edge_formats.runner(data, kind, threads)
    except Exception as err:  # the runtimes raise their own types for a file they cannot read
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ExportError(f"{quote(str(Path(folder) / name))} cannot be loaded by its runtime: {first}") from None


# --- the per-switch table --------------------------------------------------------------------------
def switch_table(
    trained: TrainedModel,
    switches: Sequence[SwitchLike] | None = None,
    *,
    measure_batch: int | None = None,
) -> list[SwitchOption]:
    """The planner's table: accuracy (when known), per-device multiply-adds and parameters of each
    switch (default: every switch with BN statistics), and with ``measure_batch`` the median seconds
    of each sub-network on this machine, with the current torch thread count, for that batch size."""
    model = trained.model.eval()
    chosen = [model.resolve(s) for s in switches] if switches else model.bn_switches()
    rows = []
    for s in chosen:
        prof = profile(model, s, trained.input_size)
        seconds = None
        if measure_batch:
            x = torch.randn(measure_batch, *trained.input_size)
            nets = model.extract(s).subnets
            with torch.inference_mode():
                seconds = tuple(measure_latency(lambda net=net, x=x: net(x)) for net in nets)
        rows.append(SwitchOption(s, trained.accuracy.get(str(s)), prof.device_macs, prof.device_params, seconds))
    return rows

"""The manifest of an export (``manifest.json``): its schema, the checks every manifest read passes,
and the files it names."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from paradis.deploy.files import (
    ExportError,
    check_digest_entry,
    check_name,
    count,
    finite_number,
    parse_json,
    quote,
)
from paradis.models import list_models
from paradis.switch import ROUNDINGS, Switch, parse_switch

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 2  # 2: edge artifacts, digests of every file, the fusion bias as numbers
READABLE_FORMATS = (1, 2)
FUSION_RULE = "sum of the partial outputs of all devices, plus the bias (fusion.pt, or fusion.bias here) added once"

MAX_CLASSES = 1_000_000  # a manifest asking for more would make the loader allocate absurd layers
MAX_IN_CHANS = 64
MAX_IMAGE_SIDE = 8192
ARTIFACT_KINDS = ("onnx", "onnx-int8", "pte")


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


def named_files(manifest: Manifest) -> list[str]:
    """Every file a manifest names (fusion, then per device: state, program, edge artifacts)."""
    names = [manifest.fusion["file"]]
    for d in manifest.devices:
        names += [d.state_file] + ([d.program_file] if d.program_file else []) + list(d.artifacts.values())
    return list(dict.fromkeys(names))

"""The manifest of an export (``manifest.json``) as a strict pydantic model: every key declared, its
type and bounds, file names that stay inside the export folder, and the checks across keys (one
device per sub-network, in order; a bias per class; the input's channels the model's). A manifest
that no export of this package writes is one :class:`~paradis.deploy.files.ExportError` naming the
key path and the value; reading it runs nothing (bounded JSON, :mod:`paradis.deploy.files`)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator, with_config
from typing_extensions import NotRequired, TypedDict

from paradis.deploy.files import ExportError, parse_json, quote
from paradis.deploy.schema import STRICT, FileName, Strict, SwitchText, count, fail, number, one_line
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


def _registered(name: str) -> str:
    if name not in list_models():
        fail("not_one_of", f"{quote(name)} is not a registered model")
    return name


def _rounding(rule: str) -> str:
    if rule not in ROUNDINGS:
        fail("not_one_of", f"{quote(rule)} is not one of {', '.join(ROUNDINGS)}")
    return rule


def _artifact_kind(kind: str) -> str:
    if kind not in ARTIFACT_KINDS:
        fail("not_one_of", f"unknown artifact kind {quote(kind)}; known: {', '.join(ARTIFACT_KINDS)}")
    return kind


def _sha256(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        fail("sha256", f"{quote(digest)} is not a SHA-256 hex digest")
    return digest


Count = count()
Side = count(1, MAX_IMAGE_SIDE)
ArtifactKind = Annotated[str, AfterValidator(_artifact_kind)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
Numbers = list[number()]


@with_config(STRICT)
class ModelArgs(TypedDict):
    """The registry arguments of the model (:func:`paradis.deploy.trained.model_from_args`); a manifest
    written before the rounding option used the shared rule."""

    name: Annotated[str, AfterValidator(_registered)]
    num_classes: count(1, MAX_CLASSES)
    in_chans: count(1, MAX_IN_CHANS)
    wide_factor: number(1e-3, 16.0)
    rounding: NotRequired[Annotated[str, AfterValidator(_rounding)]]


@with_config(STRICT)
class FusionSpec(TypedDict):
    rule: str
    file: FileName
    op: str
    bias: NotRequired[Numbers | None]  # format 2: one number per class (None: no bias)


@with_config(STRICT)
class InputSpec(TypedDict):
    # JSON writes the shape as a list: ["batch", C, H, W]
    shape: Annotated[tuple[Literal["batch"], count(1), Side, Side], Field(strict=False)]
    dtype: str
    layout: str
    dataset: str | None
    mean: Numbers | None
    std: Numbers | None
    preprocessing: str | None


@with_config(STRICT)
class OutputSpec(TypedDict):
    shape: Annotated[tuple[Literal["batch"], count(1, MAX_CLASSES)], Field(strict=False)]
    kind: str


@with_config(STRICT)
class Digest(TypedDict):
    bytes: Count
    sha256: Sha256


class DeviceEntry(Strict):
    index: Count
    width: number(0.0)
    channels: str  # the fraction range of every layer it owns, e.g. "[0.5, 1.0)"
    macs: Count
    params: Count
    state_file: FileName
    program_file: FileName | None
    file_bytes: Count
    # edge files of this device, by kind: {"onnx": "device0.onnx", "onnx-int8": ..., "pte": ...}
    artifacts: dict[ArtifactKind, FileName] = Field(default_factory=dict)


class Manifest(Strict):
    """What a deployment needs to know, as ``manifest.json``."""

    switch: SwitchText
    fusion: FusionSpec
    input: InputSpec
    output: OutputSpec
    model: ModelArgs
    macs: Count
    max_device_macs: Count
    params: Count
    accuracy: number(0.0, 1.0) | None
    devices: list[DeviceEntry]
    source: str = ""
    format: Literal[1, 2] = MANIFEST_FORMAT
    # every file the manifest names: {name: {"bytes": n, "sha256": hex digest}}
    files: dict[FileName, Digest] = Field(default_factory=dict)
    # per edge artifact kind: how it was made and how to run it (input/output names, quantization)
    artifacts: dict[ArtifactKind, dict[str, Any]] = Field(default_factory=dict)
    # top-1 of the fused output of each kind ("torch", "onnx", "onnx-int8", "pte") on the test split
    evaluation: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _reports_readable(self) -> Manifest:
        """What ``export`` prints of a manifest (each artifact kind's writing time, the fused top-1 and its
        seconds per kind) is there and numeric: a crafted manifest is refused here, not halfway through
        copying a registered version."""

        def finite(value: Any, low: float, high: float) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high

        for kind, info in self.artifacts.items():
            if not finite(info.get("export_seconds"), 0.0, 1e7):
                raise ValueError(f"artifacts.{kind}.export_seconds {quote(info.get('export_seconds'))} is not seconds")
        ev = self.evaluation
        if ev is not None:
            top1, seconds = ev.get("top1"), ev.get("seconds")
            if not (isinstance(top1, dict) and isinstance(seconds, dict) and finite(ev.get("images"), 0, 1e9)):
                raise ValueError("evaluation needs images, top1 and seconds")
            for k, v in top1.items():
                if not (finite(v, 0.0, 1.0) and finite(seconds.get(k), 0.0, 1e7)):
                    raise ValueError(f"evaluation.top1.{quote(k)}: {quote(v)} is not in [0, 1], or has no seconds")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        """One device per sub-network, in order; a bias per class; the input's channels the model's."""
        n = len(self.parsed_switch)
        if len(self.devices) != n:
            raise ValueError(f"{len(self.devices)} devices for switch {self.switch}")
        for i, d in enumerate(self.devices):
            if d.index != i:
                raise ValueError(f"device {i}: index {quote(d.index)} is not its position {i}")
        classes, bias = self.model["num_classes"], self.fusion.get("bias")
        if bias is not None and len(bias) != classes:
            raise ValueError(f"fusion.bias is not a list of {classes} numbers (one per class)")
        shape, in_chans = self.input["shape"], self.model["in_chans"]
        if shape[1] != in_chans:
            raise ValueError(f"input.shape {quote(list(shape))}: {shape[1]} channels where the model takes {in_chans}")
        return self

    @property
    def parsed_switch(self) -> Switch:
        return parse_switch(self.switch)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1)

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
            return cls.model_validate(data)
        except ValidationError as err:
            raise ExportError(f"{where}: not a valid ParaDiS manifest ({one_line(err)})") from None


def named_files(manifest: Manifest) -> list[str]:
    """Every file a manifest names (fusion, then per device: state, program, edge artifacts)."""
    names = [manifest.fusion["file"]]
    for d in manifest.devices:
        names += [d.state_file] + ([d.program_file] if d.program_file else []) + list(d.artifacts.values())
    return list(dict.fromkeys(names))

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

import json
import math
import os
import pickle
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
from paradis.deploy.onnx import EdgeOptions, RunData, Runner
from paradis.deploy.planner import SwitchOption
from paradis.deploy.timing import measure_latency
from paradis.engine.metrics import measures_by_switch
from paradis.models import ParaDiSModel, create_model
from paradis.models.base import Fusion, SubNetwork
from paradis.switch import Switch, SwitchLike, parse_switch

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 2  # 2: edge artifacts, digests of every file, the fusion bias as numbers
READABLE_FORMATS = (1, 2)
FUSION_RULE = "sum of the partial outputs of all devices, plus the bias (fusion.pt, or fusion.bias here) added once"
CALIBRATION_SOURCE = (
    "the training images that calibrate BN in paradis.engine (the same subset of the run's training split)"
)

# Image sizes the training data sets give the model (C comes from the model's first layer).


class ExportError(ValueError):
    """A model or export folder that cannot be exported or read; names the path and what is wrong."""


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
        }


def build_model(args: Mapping[str, Any]) -> ParaDiSModel:
    """The untrained model of :meth:`TrainedModel.model_args` (or a manifest's ``model``)."""
    return create_model(
        args["name"],
        num_classes=int(args["num_classes"]),
        wide_factor=float(args["wide_factor"]),
        in_chans=int(args["in_chans"]),
    )


def _shapes_from_state(state: Mapping[str, torch.Tensor], where: str) -> tuple[int, int]:
    """``(num_classes, in_chans)`` read off the classifier and the stem of a state dict."""
    try:
        return int(state["head.weight"].shape[0]), int(state["stem.weight"].shape[1])
    except (KeyError, AttributeError, IndexError):
        raise ExportError(
            f"{where}: not the state dict of a ParaDiS classifier (no head.weight / stem.weight); only "
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
    then ``model_name`` is required, and accuracies are read from ``history.json`` beside it)."""
    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("checkpoint.pt", "model.pt") if (p / n).is_file()]
        if not found:
            raise ExportError(f"{str(p)!r} holds neither checkpoint.pt nor model.pt")
        p = found[0]
    if not p.is_file():
        raise ExportError(f"model file {str(p)!r} does not exist")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise ExportError(f"{str(p)!r} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(blob, dict):
        raise ExportError(f"{str(p)!r} is not a checkpoint or a state dict")
    config: dict = blob.get("config") or {}
    state = blob["model"] if "model" in blob and isinstance(blob["model"], dict) else blob
    history = blob.get("history")
    if history is None and (p.parent / "history.json").is_file():
        history = json.loads((p.parent / "history.json").read_text())
    name = model_name or (config.get("model") or {}).get("name")
    if not name:
        raise ExportError(f"{str(p)!r} is a bare state dict: give the model name (e.g. mobilenet_v1_small)")
    wf = wide_factor if wide_factor is not None else (config.get("training") or {}).get("wide_factor", 1.2)
    num_classes, in_chans = _shapes_from_state(state, str(p))
    data = config.get("data") or {}
    dataset = data.get("name")
    size = (
        tuple(int(v) for v in input_size) if input_size else input_size_for(dataset, in_chans, data.get("image_size"))
    )
    if size is None:
        raise ExportError(f"{str(p)!r}: the input size is unknown (data set {dataset!r}); give it as C H W")
    model = create_model(name, num_classes=num_classes, wide_factor=float(wf), in_chans=in_chans)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ExportError(f"{str(p)!r} does not fit model {name!r}: {str(err).splitlines()[0]}") from None
    model.eval()
    acc: dict[str, float] = {}
    for metrics in history or []:  # the last evaluation of each switch wins
        acc.update(accuracy_from_metrics(metrics))
    acc.update({str(parse_switch(k)): float(v) for k, v in (accuracy or {}).items()})
    return TrainedModel(model, name, num_classes, in_chans, float(wf), size, dataset, acc, str(p), config)  # type: ignore[arg-type]


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
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") not in READABLE_FORMATS:
                raise ExportError(f"{where}: format {data.get('format')!r} is not one of {READABLE_FORMATS}")
            data["devices"] = [DeviceEntry(**d) for d in data["devices"]]
            manifest = cls(**data)
            parse_switch(manifest.switch)
        except ExportError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ExportError(f"{where}: not a valid ParaDiS manifest ({type(err).__name__}: {err})") from None
        if len(manifest.devices) != len(manifest.parsed_switch):
            raise ExportError(f"{where}: {len(manifest.devices)} devices for switch {manifest.switch}")
        return manifest


def read_manifest(folder: str | os.PathLike) -> Manifest:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise ExportError(f"{str(folder)!r} is not an export folder: it has no {MANIFEST_NAME}")
    return Manifest.from_json(path.read_text(), str(path))


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
) -> Manifest:
    """Write the per-device files, ``fusion.pt`` and ``manifest.json`` of ``switch`` to ``out_dir``; with
    ``edge``, also the ONNX / int8 / ExecuTorch files of every device and their test-split top-1."""
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
    data = _edge_data(trained, edge)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    if edge.active:
        manifest.artifacts = _artifact_info(edge, data, seconds)
        if data is not None and data.test:
            manifest.evaluation = evaluate_export(out, manifest, data.test, edge.threads, extracted.subnets)
    manifest.files = file_digests(out, manifest)
    (out / MANIFEST_NAME).write_text(manifest.to_json() + "\n")
    return manifest


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
    io = {"input": edge_formats.INPUT_NAME, "output": edge_formats.OUTPUT_NAME}
    info: dict[str, dict[str, Any]] = {}
    if "onnx" in edge.kinds():
        info["onnx"] = {**io, "exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=True)"}
        info["onnx"]["runtime"] = "onnxruntime"
    if "onnx-int8" in edge.kinds() and data is not None:
        images = sum(int(b.shape[0]) for b in data.calibration)
        calibration = {"images": images, "batches": len(data.calibration), "source": CALIBRATION_SOURCE}
        info["onnx-int8"] = {**io, **edge_formats.QUANTIZATION_INFO, "calibration": calibration}
        info["onnx-int8"]["runtime"] = "onnxruntime"
    if "pte" in edge.kinds():
        info["pte"] = {"method": "forward", "partitioner": "XNNPACK", "max_batch": edge_formats.PTE_MAX_BATCH}
        info["pte"]["runtime"] = "executorch"
    for kind, value in info.items():
        value["export_seconds"] = round(seconds.get(kind, 0.0), 3)  # all devices together
    return info


def file_digests(folder: Path, manifest: Manifest) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file the manifest names."""
    names = [manifest.fusion["file"]]
    for d in manifest.devices:
        names += [d.state_file] + ([d.program_file] if d.program_file else []) + list(d.artifacts.values())
    files = {}
    for name in names:
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


# --- loading an export -----------------------------------------------------------------------------
def load_subnetwork(folder: str | os.PathLike, index: int, manifest: Manifest | None = None) -> SubNetwork:
    """Sub-network ``index`` of an export, from its state file alone (the package builds the skeleton)."""
    manifest = manifest or read_manifest(folder)
    if not 0 <= index < len(manifest.devices):
        raise ExportError(f"{str(folder)!r}: switch {manifest.switch} has no device {index}")
    skeleton = build_model(manifest.model).extract(manifest.switch, missing_stats_ok=True).subnets[index]
    path = Path(folder) / manifest.devices[index].state_file
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        skeleton.load_state_dict(state)
    except (OSError, RuntimeError, pickle.UnpicklingError) as err:
        raise ExportError(f"{str(path)!r} cannot be loaded: {str(err).splitlines()[0]}") from None
    return skeleton.eval()


def load_fusion(folder: str | os.PathLike, manifest: Manifest | None = None) -> Fusion:
    manifest = manifest or read_manifest(folder)
    path = Path(folder) / manifest.fusion["file"]
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return Fusion(blob["bias"])
    except (OSError, RuntimeError, pickle.UnpicklingError, KeyError, TypeError) as err:
        raise ExportError(f"{str(path)!r} is not a fusion file ({type(err).__name__}: {err})") from None


def load_program(folder: str | os.PathLike, index: int, manifest: Manifest | None = None) -> torch.nn.Module:
    """The ``torch.export`` program of device ``index`` (plain torch; this package is not needed)."""
    manifest = manifest or read_manifest(folder)
    if not 0 <= index < len(manifest.devices):
        raise ExportError(f"{str(folder)!r}: switch {manifest.switch} has no device {index}")
    name = manifest.devices[index].program_file
    if name is None:
        raise ExportError(f"{str(folder)!r} was exported without programs")
    return torch.export.load(str(Path(folder) / name)).module()


def load_artifact(
    folder: str | os.PathLike,
    index: int,
    kind: str = "onnx",
    manifest: Manifest | None = None,
    threads: int | None = None,
) -> Runner:
    """Device ``index``'s edge file of ``kind`` (``onnx``, ``onnx-int8``, ``pte``) as a function from a
    batch to its partial output, on ONNX Runtime or ExecuTorch."""
    manifest = manifest or read_manifest(folder)
    if not 0 <= index < len(manifest.devices):
        raise ExportError(f"{str(folder)!r}: switch {manifest.switch} has no device {index}")
    name = manifest.devices[index].artifacts.get(kind)
    if name is None:
        raise ExportError(f"{str(folder)!r} has no {kind} file for device {index} (exported without --format)")
    return edge_formats.runner(Path(folder) / name, kind, threads)


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

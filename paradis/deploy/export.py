"""Writing the export of one switch for deployment: a file per device and a manifest, staged in a
folder beside the output and moved in once complete (reading it back: :mod:`paradis.deploy.load`).

``export_switch(model, switch, out_dir, input_size=...)`` writes, for sub-network ``i`` of the switch:

- ``device{i}.pt``: its state dict only (its slice of every weight and the switch's BN statistics),
  about its share of the parameters; read back with :func:`~paradis.deploy.load.load_subnetwork`
  (needs this package);
- ``device{i}.pt2``: the same sub-network as a ``torch.export`` program with a dynamic batch size,
  which loads with plain torch (``torch.export.load(path).module()``), without this package;

- with :class:`~paradis.deploy.onnx.EdgeOptions`: ``device{i}.onnx``, ``device{i}.int8.onnx`` and
  ``device{i}.pte`` for ONNX Runtime and ExecuTorch (:mod:`paradis.deploy.onnx`), each measured on the
  test split;

and ``fusion.pt`` (``{"bias": tensor}``: the fusion is the sum of the partial outputs plus this bias,
added once; the manifest repeats the bias as numbers) and ``manifest.json``
(:class:`~paradis.deploy.manifest.Manifest`): switch, fusion rule, input specification, the switch's
accuracy and multiply-adds when known, the per-device multiply-adds, parameters and files, and the
size and SHA-256 of every file it names.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import paradis.deploy.onnx as edge_formats
from paradis.costs import profile
from paradis.data import normalization
from paradis.deploy.files import (
    MAX_MANIFEST_BYTES,
    ExportError,
    member_path,
    quote,
    read_limited,
)
from paradis.deploy.load import evaluate_export, read_manifest, verified_bytes, verify_export
from paradis.deploy.manifest import FUSION_RULE, MANIFEST_NAME, DeviceEntry, Manifest, named_files
from paradis.deploy.onnx import EdgeData, EdgeOptions
from paradis.deploy.trained import TrainedModel
from paradis.models.base import SubNetwork
from paradis.switch import Switch, SwitchLike

CALIBRATION_SOURCE = (
    "the training images that calibrate BN in paradis.engine (the same subset of the run's training split)"
)


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
            (staging / name).write_bytes(verified_bytes(source, manifest, name))
        (staging / MANIFEST_NAME).write_bytes(
            read_limited(Path(source) / MANIFEST_NAME, MAX_MANIFEST_BYTES, "manifest")
        )
        _install(staging, out, old_files, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_export(
    trained: TrainedModel, s: Switch, out: Path, programs: bool, edge: EdgeOptions, data: EdgeData | None
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
    return DeviceEntry(
        index=index,
        width=0.0,
        channels="",
        macs=0,
        params=0,
        state_file=state_file,
        program_file=program_file,
        file_bytes=size,
    )


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


def _edge_data(trained: TrainedModel, edge: EdgeOptions) -> EdgeData | None:
    """The run's calibration images (for int8) and test split (to measure the artifacts), when needed."""
    need_test = edge.active and edge.test_images != 0
    if not (edge.quantize or need_test):
        return None
    try:
        return edge_formats.edge_data(trained.dataset, trained.config, edge, need_test=need_test)
    except (ValueError, OSError) as err:  # DataError is a ValueError
        raise ExportError(f"{trained.source}: the data for the edge export cannot be loaded: {err}") from None


def _artifact_info(edge: EdgeOptions, data: EdgeData | None, seconds: Mapping[str, float]) -> dict[str, dict[str, Any]]:
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

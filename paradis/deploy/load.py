"""Reading an export folder: its manifest, and each file it names once the file's size and SHA-256
match the manifest (:mod:`paradis.deploy.files`); state and fusion files are read with
``weights_only=True``, edge files handed to their runtime as the verified bytes."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import paradis.deploy.onnx as edge_formats
from paradis.deploy.files import (
    MAX_MANIFEST_BYTES,
    ExportError,
    member_path,
    quote,
    read_limited,
    read_verified,
)
from paradis.deploy.manifest import MANIFEST_NAME, DeviceEntry, Manifest, named_files
from paradis.deploy.onnx import Runner
from paradis.deploy.trained import model_from_args
from paradis.models.base import Fusion, SubNetwork
from paradis.util import first_line


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


def verify_export(folder: str | os.PathLike, manifest: Manifest | None = None) -> Manifest:
    """Check every file the manifest names against its recorded size and SHA-256 (nothing is loaded)."""
    manifest = manifest or read_manifest(folder)
    for name in named_files(manifest):
        read_verified(folder, name, manifest.files, quote(str(folder)))
    return manifest


def verified_bytes(folder: str | os.PathLike, manifest: Manifest, name: str) -> bytes:
    return read_verified(folder, name, manifest.files, quote(str(folder)))


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
        first = first_line(err, 200)
        raise ExportError(f"{where} cannot be loaded: {first}") from None


def load_state(folder: str | os.PathLike, index: int, manifest: Manifest | None = None) -> dict[str, torch.Tensor]:
    """The state dict of device ``index``'s ``.pt`` file, once its digest matches the manifest."""
    manifest, d = _device(folder, index, manifest)
    where = quote(str(Path(folder) / d.state_file))
    state = _torch_load(verified_bytes(folder, manifest, d.state_file), where)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{where} cannot be loaded: not a state dict of tensors")
    return state


def load_subnetwork(folder: str | os.PathLike, index: int, manifest: Manifest | None = None) -> SubNetwork:
    """Sub-network ``index`` of an export, from its state file alone (the package builds the skeleton);
    code-safe: the file's digest is checked, then it is read with ``weights_only=True``."""
    manifest, d = _device(folder, index, manifest)
    state = load_state(folder, index, manifest)
    skeleton = model_from_args(manifest.model).extract(manifest.switch, missing_stats_ok=True).subnets[index]
    try:
        skeleton.load_state_dict(state)
    except RuntimeError as err:
        where = quote(str(Path(folder) / d.state_file))
        raise ExportError(f"{where} cannot be loaded: {first_line(err, 200)}") from None
    return skeleton.eval()


def load_fusion(folder: str | os.PathLike, manifest: Manifest | None = None) -> Fusion:
    """The fusion (its bias) from ``fusion.pt``, digest checked, read with ``weights_only=True``."""
    manifest = manifest or read_manifest(folder)
    where = quote(str(Path(folder) / manifest.fusion["file"]))
    blob = _torch_load(verified_bytes(folder, manifest, manifest.fusion["file"]), where)
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
    data = verified_bytes(folder, manifest, d.program_file)
    return torch.export.load(io.BytesIO(data)).module()


def artifact_bytes(folder: str | os.PathLike, index: int, kind: str, manifest: Manifest | None = None) -> bytes:
    """The verified bytes of device ``index``'s edge file of ``kind`` (e.g. to send to a remote device)."""
    manifest, d = _device(folder, index, manifest)
    name = d.artifacts.get(kind)
    if name is None:
        raise ExportError(
            f"{quote(str(folder))} has no {str(kind)[:40]} file for device {index} (exported without --format)"
        )
    return verified_bytes(folder, manifest, name)


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
        first = first_line(err, 200)
        raise ExportError(f"{quote(str(Path(folder) / name))} cannot be loaded by its runtime: {first}") from None


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

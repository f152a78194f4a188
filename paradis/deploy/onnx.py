"""Edge formats of an export: ONNX per device, int8 ONNX, ExecuTorch programs, and their evaluation.

- ``device{i}.onnx``: the sub-network through torch's dynamo ONNX exporter (``onnx``, ``onnxscript``),
  input ``x`` (``["batch", C, H, W]``, the batch size dynamic), output ``partial``; runs on ONNX Runtime;
- ``device{i}.int8.onnx``: onnxruntime's static quantization of that file (QDQ: int8 weights per
  output channel, uint8 activations per tensor), calibrated on the images that calibrate BN;
- ``device{i}.pte``: an ExecuTorch program lowered with the XNNPACK partitioner (``executorch``).

The fusion is the same for every format: the sum of the partial outputs plus the bias. Every artifact
is measured on the test split (top-1 of the fused output). ``onnx``, ``onnxruntime`` and ``executorch``
are imported inside the functions that need them, so that ``import paradis.deploy`` does not.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paradis.data import holdout, load_dataset, make_loader, subset, without_augmentation
from paradis.deploy.files import ExportError

INPUT_NAME = "x"
OUTPUT_NAME = "partial"
FORMATS = ("onnx", "pte")  # what --format takes (pt/pt2 are the export's own)
QUANTIZATIONS = ("int8",)
PTE_MAX_BATCH = 1024  # ExecuTorch plans memory for a bounded dynamic batch
# artifact kind -> file name of device i
ARTIFACT_NAMES = {"onnx": "device{i}.onnx", "onnx-int8": "device{i}.int8.onnx", "pte": "device{i}.pte"}
QUANTIZATION_INFO = {
    "tool": "onnxruntime.quantization.quantize_static",
    "format": "QDQ",
    "weights": "int8 with a 7-bit range (reduce_range), symmetric, per output channel",
    "activations": "uint8, per tensor",
    "calibrate_method": "MinMax",
}

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EdgeOptions:
    """Which edge artifacts an export writes and how it measures them."""

    formats: tuple[str, ...] = ()  # "onnx", "pte"
    quantize: str | None = None  # "int8": device{i}.int8.onnx (implies "onnx")
    test_images: int | None = None  # None: the whole test split; 0: no evaluation
    calibration_batches: int | None = None  # None: the run's evaluation.calibration_batches
    batch_size: int | None = None  # None: the run's calibration batch size
    data_root: str | None = None  # None: the run's data.root
    threads: int | None = None  # ONNX Runtime threads while evaluating (None: its default)

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown export format {unknown[0]!r}; known: {', '.join(FORMATS)} (pt and pt2 always)")
        if self.quantize not in (None, *QUANTIZATIONS):
            raise ValueError(f"unknown quantization {self.quantize!r}; known: {', '.join(QUANTIZATIONS)}")
        if self.quantize and "onnx" not in self.formats:
            object.__setattr__(self, "formats", ("onnx", *self.formats))

    def kinds(self) -> list[str]:
        """Artifact kinds per device, in file order."""
        kinds = ["onnx"] if "onnx" in self.formats else []
        kinds += ["onnx-int8"] if self.quantize == "int8" else []
        return kinds + (["pte"] if "pte" in self.formats else [])

    @property
    def active(self) -> bool:
        return bool(self.formats)


# the modules each kind needs, and the extra of pyproject.toml that installs them
_NEEDS = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "onnx-int8": ("onnxruntime",), "pte": ("executorch",)}


def check_installed(options: EdgeOptions) -> None:
    """Raise ``ImportError`` naming what is missing for ``options``, before anything is written."""
    import importlib.util

    missing = [m for k in options.kinds() for m in _NEEDS[k] if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"the {'/'.join(options.kinds())} export needs {', '.join(dict.fromkeys(missing))}: "
            "pip install -c constraints.txt -e '.[edge]'"
        )


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- writing the artifacts -------------------------------------------------------------------------
def export_onnx(net: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike) -> None:
    """``net`` as one self-contained ONNX file (weights inside) with a dynamic batch size."""
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        net.eval(),
        (example,),
        str(path),
        dynamo=True,
        external_data=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"x": {0: batch}},
        verbose=False,
    )
    strip_debug_metadata(path)


def strip_debug_metadata(path: str | os.PathLike) -> None:
    """Drop the exporter's per-node debug records (source stack, FX node, module path): a quarter of a
    small model's file, and nothing a runtime reads."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(model, str(path))


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, batches: Iterable[torch.Tensor]) -> int:
    """Static int8 quantization of an ONNX file, calibrated on ``batches``; returns the images used."""
    from onnxruntime.quantization import CalibrationDataReader, quant_pre_process

    feeds = [{INPUT_NAME: b.detach().cpu().float().numpy()} for b in batches]
    if not feeds:
        raise ValueError("int8 quantization needs at least one calibration batch")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.items, None)

    prepared = Path(out_path).with_suffix(".prepared.onnx")  # shape inference and graph optimization first
    try:
        quant_pre_process(str(fp32_path), str(prepared))
        _quantize(prepared, out_path, Reader())
    finally:
        prepared.unlink(missing_ok=True)
    return sum(f[INPUT_NAME].shape[0] for f in feeds)


def _quantize(model_path: Path, out_path: str | os.PathLike, reader: Any) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(model_path),
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # 7-bit weights: an x86 CPU without VNNI (AVX2 only) multiplies u8 x s8 with VPMADDUBSW, whose
        # 16-bit pairwise sums saturate with full-range weights; ONNX Runtime's documented remedy. On such a
        # CPU (AMD EPYC, AVX2) the int8 files' mean output error was 18 % of the fp32 output, 5-10 % with it
        reduce_range=True,
    )


def export_pte(net: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike) -> None:
    """``net`` as an ExecuTorch program, lowered to XNNPACK, batch size dynamic up to ``PTE_MAX_BATCH``."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    batch = torch.export.Dim("batch", min=1, max=PTE_MAX_BATCH)
    # traced at the largest batch: ExecuTorch 1.5.1 bounds the input's memory near a small example's
    # batch (15 images when traced with 2 or 8), whatever the Dim's max
    example = example[:1].expand(PTE_MAX_BATCH, *example.shape[1:]).contiguous()
    program = torch.export.export(net.eval(), (example,), dynamic_shapes={"x": {0: batch}})
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    Path(path).write_bytes(lowered.buffer)


def write_artifacts(
    net: torch.nn.Module,
    example: torch.Tensor,
    folder: Path,
    index: int,
    options: EdgeOptions,
    calibration: Sequence[torch.Tensor],
    seconds: dict[str, float] | None = None,
) -> dict[str, str]:
    """Device ``index``'s edge files in ``folder``: ``{kind: file name}``; adds each kind's time to ``seconds``."""
    names = {k: ARTIFACT_NAMES[k].format(i=index) for k in options.kinds()}
    writers: dict[str, Callable[[], object]] = {
        "onnx": lambda: export_onnx(net, example, folder / names["onnx"]),
        "onnx-int8": lambda: quantize_int8(folder / names["onnx"], folder / names["onnx-int8"], calibration),
        "pte": lambda: export_pte(net, example, folder / names["pte"]),
    }
    for kind in names:
        t0 = time.perf_counter()
        writers[kind]()
        if seconds is not None:
            seconds[kind] = seconds.get(kind, 0.0) + time.perf_counter() - t0
    return names


# --- running the artifacts -------------------------------------------------------------------------
def _tensors(message) -> Iterable:
    """Every tensor an ONNX message holds, wherever it sits: initializers, sparse tensors' values and
    indices, node attributes, subgraphs, model-local functions, training graphs (a walk over every message
    field, so that no place of the format is missed)."""
    import onnx

    if isinstance(message, onnx.TensorProto):
        yield message
    for _, value in message.ListFields():
        if hasattr(value, "ListFields"):  # a message
            yield from _tensors(value)
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and hasattr(value[0], "ListFields"):
            for item in value:  # a repeated field of messages (numbers, like float_data, are skipped at once)
                yield from _tensors(item)


def refuse_external_data(data: bytes, where: str) -> None:
    """An ONNX model may name external files for its tensors, which ONNX Runtime would read from
    wherever it resolves them (the working directory, for a model given as bytes): a file we did not
    write must carry every tensor inside itself."""
    import onnx

    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as err:  # protobuf raises DecodeError and others
        raise ExportError(f"{where} is not an ONNX model ({type(err).__name__})") from None
    for tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            names = {e.key: e.value for e in tensor.external_data}
            raise ExportError(
                f"{where}: tensor {tensor.name[:80]!r} names external data {names.get('location', '?')[:80]!r}; "
                "refused (an exported file carries its tensors inside itself)"
            )


def onnx_runner(source: str | os.PathLike | bytes, threads: int | None = None) -> Runner:
    """A function from a batch to the partial output of an ONNX file (a path, or its verified bytes),
    on ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    model = source if isinstance(source, bytes) else Path(source).read_bytes()
    refuse_external_data(model, "ONNX file" if isinstance(source, bytes) else f"ONNX file {str(source)!r}")
    # from bytes: ONNX Runtime then has no folder to resolve anything against
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.detach().cpu().float().numpy()})[0])

    return run


def pte_runner(source: str | os.PathLike | bytes) -> Runner:
    """A function from a batch to the partial output of an ExecuTorch program (its ``forward``)."""
    from executorch.runtime import Runtime

    # the program (and the bytes it was loaded from) must outlive its method: a method of a program
    # loaded from bytes reads them, and crashes once they are freed
    program = Runtime.get().load_program(source if isinstance(source, bytes) else str(source))
    method = program.load_method("forward")

    def run(x: torch.Tensor, _keep: object = program) -> torch.Tensor:
        chunks = x.detach().cpu().float().split(PTE_MAX_BATCH)
        return torch.cat([method.execute([c.contiguous()])[0] for c in chunks])

    return run


def runner(source: str | os.PathLike | bytes, kind: str, threads: int | None = None) -> Runner:
    """The runner of one artifact of kind ``onnx``, ``onnx-int8`` or ``pte`` (a path or its bytes)."""
    if kind == "pte":
        return pte_runner(source)
    return onnx_runner(source, threads)


def fuse(parts: Sequence[torch.Tensor], bias: torch.Tensor | None) -> torch.Tensor:
    """The fusion rule: sum of the partial outputs plus the bias, once."""
    out = torch.stack(list(parts)).sum(0)
    return out if bias is None else out + bias


@torch.no_grad()
def fused_top1(runners: Sequence[Runner], bias: torch.Tensor | None, batches: Iterable) -> tuple[float, int]:
    """Top-1 (fraction) of the fused output of ``runners`` over ``(x, y)`` batches, and the image count."""
    correct = total = 0
    for x, y in batches:
        pred = fuse([r(x) for r in runners], bias).argmax(1)
        correct += int((pred == y).sum())
        total += int(y.shape[0])
    if total == 0:
        raise ValueError("the test split gave no images")
    return correct / total, total


# --- data: the run's calibration images and test split ---------------------------------------------
def _run_splits(dataset: str, config: Mapping[str, Any], root: str | None) -> Any:
    """The data set's splits as the training run built them (``paradis.engine``)."""
    data = config.get("data") or {}
    seed = int((config.get("training") or {}).get("seed", 0))
    if dataset == "synthetic":
        return load_dataset(
            "synthetic",
            train_size=int(data.get("synthetic_train", 512)),
            test_size=int(data.get("synthetic_test", 256)),
            seed=seed,
        )
    kwargs = {"image_size": int(data.get("image_size", 224))} if dataset == "imagenet" else {}
    return load_dataset(dataset, root or data.get("root"), **kwargs)


@dataclass
class EdgeData:
    """The calibration batches (images only) and the test loader of a trained model's run."""

    calibration: list[torch.Tensor]
    test: Iterable
    batch_size: int


def edge_data(dataset: str | None, config: Mapping[str, Any], options: EdgeOptions, *, need_test: bool) -> EdgeData:
    """The images that calibrate BN in ``paradis.engine`` (the same subset of the training split, without
    augmentation) and the first ``options.test_images`` of the test split (all by default)."""
    if dataset is None:
        raise ValueError("the model's data set is unknown (a bare state dict): give it (--dataset)")
    training = config.get("training") or {}
    evaluation = config.get("evaluation") or {}
    seed = int(training.get("seed", 0))
    bs = options.batch_size or evaluation.get("calibration_batch_size") or int(training.get("batch_size", 128))
    batches = options.calibration_batches or int(evaluation.get("calibration_batches", 20))
    data = config.get("data") or {}
    splits = _run_splits(dataset, config, options.data_root)
    if data.get("holdout"):
        train = holdout(splits.train, data.get("train_subset"), int(data["holdout"]), seed)[0]
    else:
        train = subset(splits.train, data.get("train_subset"), seed)
    calib = without_augmentation(subset(train, batches * bs, seed + 17))
    calibration = [x for x, _ in _first(make_loader(calib, bs, shuffle=False), batches)]
    test: Iterable = ()
    if need_test:
        part = subset(splits.test, options.test_images, seed) if options.test_images else splits.test
        test = make_loader(part, bs, shuffle=False)
    return EdgeData(calibration, test, bs)


def _first(loader: Iterable, n: int) -> Iterator:
    for i, batch in enumerate(loader):
        if i >= n:
            return
        yield batch

"""Edge export: ONNX per device, int8 ONNX, ExecuTorch programs, digests and test-split accuracy."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import paradis
from paradis.deploy import (
    EdgeOptions,
    ExportError,
    TrainedModel,
    export_switch,
    load_artifact,
    load_subnetwork,
    read_manifest,
)
from paradis.deploy.onnx import edge_data
from tests.deploy.recipes import recipe

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SWITCHES = ("[0.5, 0.5]", "[0.5, 0.25, 0.25]")
# a run configuration as paradis.engine stores it (only the keys the edge export reads)
CONFIG = {
    "model": {"name": "mobilenet_v1_small"},
    "data": {"name": "synthetic", "synthetic_train": 96, "synthetic_test": 40, "train_subset": None},
    "training": {"seed": 0, "batch_size": 16, "wide_factor": 1.0},
    "evaluation": {"calibration_batches": 2, "calibration_batch_size": None},
}


@pytest.fixture(scope="module")
def trained():
    """A tiny model whose BN statistics come from the run's calibration images (as the trainer's do)."""
    torch.manual_seed(0)
    model = paradis.create_model("mobilenet_v1_small", num_classes=10, wide_factor=1.0)
    calibration = edge_data("synthetic", CONFIG, EdgeOptions(), need_test=False).calibration
    for s in SWITCHES:
        paradis.calibrate_bn(model, s, calibration)
    acc = dict.fromkeys(SWITCHES, 0.5)
    size = (1, 28, 28)
    return TrainedModel.of(model.eval(), "mobilenet_v1_small", size, accuracy=acc, dataset="synthetic", config=CONFIG)


@pytest.fixture(scope="module")
def onnx_export(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    edge = EdgeOptions(formats=("onnx",), quantize="int8", test_images=24)
    return out, export_switch(trained, "[0.5, 0.25, 0.25]", out, programs=False, edge=edge)


def test_each_onnx_file_and_their_fusion_equal_the_torch_model(trained, onnx_export):
    out, manifest = onnx_export
    s = "[0.5, 0.25, 0.25]"
    assert [d.artifacts for d in manifest.devices] == [
        {"onnx": f"device{i}.onnx", "onnx-int8": f"device{i}.int8.onnx"} for i in range(3)
    ]
    runners = [load_artifact(out, i, "onnx") for i in range(3)]
    subnets = [load_subnetwork(out, i) for i in range(3)]
    for batch in (1, 5):  # the batch size is dynamic (exported with 2)
        x = torch.randn(batch, 1, 28, 28)
        parts = [run(x) for run in runners]
        with torch.no_grad():
            for got, net in zip(parts, subnets):
                torch.testing.assert_close(got, net(x), rtol=1e-4, atol=1e-4)
        bias = torch.tensor(manifest.fusion["bias"])  # the fusion needs no torch file either
        with torch.no_grad():
            want = trained.model.eval()(x, switch=s)
        torch.testing.assert_close(torch.stack(parts).sum(0) + bias, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ExportError, match="has no pte file for device 0"):
        load_artifact(out, 0, "pte")


def test_int8_files_are_calibrated_smaller_and_measured(trained, onnx_export):
    out, manifest = onnx_export
    info = manifest.artifacts["onnx-int8"]
    assert info["calibration"] == {"images": 32, "batches": 2, "source": info["calibration"]["source"]}
    assert info["format"] == "QDQ" and manifest.artifacts["onnx"]["input"] == "x"
    test = edge_data("synthetic", CONFIG, EdgeOptions(), need_test=True).test
    x = torch.cat([images for images, _ in test])
    for i, d in enumerate(manifest.devices):
        assert manifest.files[d.artifacts["onnx-int8"]]["bytes"] < manifest.files[d.artifacts["onnx"]]["bytes"]
        fp32, int8 = load_artifact(out, i, "onnx")(x), load_artifact(out, i, "onnx-int8")(x)
        assert (int8 - fp32).abs().mean() < 0.15 * fp32.abs().mean()  # quantized, not garbage
    ev = manifest.evaluation
    assert ev["images"] == 24 and set(ev["top1"]) == {"torch", "onnx", "onnx-int8"}
    assert ev["top1"]["onnx"] == pytest.approx(ev["top1"]["torch"], abs=1 / 24 + 1e-9)
    assert all(0 <= v <= 1 for v in ev["top1"].values())


def test_manifest_names_every_file_with_its_digest(onnx_export):
    out, manifest = onnx_export
    assert read_manifest(out) == manifest and manifest.format == 2
    on_disk = {p.name for p in out.iterdir()} - {"manifest.json"}
    assert set(manifest.files) == on_disk  # every file written is named, nothing else
    for name, entry in manifest.files.items():
        data = (out / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_onnx_export_runs_with_onnxruntime_alone(trained, onnx_export, tmp_path):
    """A device with only onnxruntime and numpy: no torch, no paradis."""
    out, _ = onnx_export
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        want = trained.model.eval()(x, "[0.5, 0.25, 0.25]")
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "want.npy", want.numpy())
    code = recipe("With ONNX Runtime and numpy only", out)
    script = f"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("paradis", "torch"):
            raise ImportError(name + " is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np, onnxruntime as ort
x = np.load({str(tmp_path / "x.npy")!r})
{code}
assert np.abs(logits - np.load({str(tmp_path / "want.npy")!r})).max() < 1e-4
assert not any(k.split(".")[0] in ("torch", "paradis") for k in sys.modules)
print("ok", len(parts))
"""
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok 3"


@pytest.mark.slow  # ExecuTorch's lowering takes about 6 s a device here
def test_executorch_programs_equal_the_torch_model(trained, tmp_path):
    pytest.importorskip("executorch")
    s = "[0.5, 0.5]"
    manifest = export_switch(trained, s, tmp_path, programs=False, edge=EdgeOptions(formats=("pte",), test_images=16))
    x = torch.randn(3, 1, 28, 28)
    parts = [load_artifact(tmp_path, i, "pte")(x) for i in range(2)]
    with torch.no_grad():
        for i, got in enumerate(parts):
            torch.testing.assert_close(got, load_subnetwork(tmp_path, i)(x), rtol=1e-4, atol=1e-4)
        want = trained.model.eval()(x, switch=s)
    fused = torch.stack(parts).sum(0) + torch.tensor(manifest.fusion["bias"])
    torch.testing.assert_close(fused, want, rtol=1e-4, atol=1e-4)
    top1 = manifest.evaluation["top1"]
    assert top1["pte"] == pytest.approx(top1["torch"], abs=1 / 16 + 1e-9)
    assert manifest.artifacts["pte"]["partitioner"] == "XNNPACK" and "device1.pte" in manifest.files


def test_command_line_and_clear_errors(trained, tmp_path, capsys, monkeypatch):
    from orchestration.deploy import main

    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"model": trained.model.state_dict(), "config": CONFIG, "history": [{"acc/0.5-0.5": 0.5}]}, ckpt)
    out = tmp_path / "out"
    args = ["export", "--checkpoint", str(ckpt), "--switch", "[0.5, 0.5]", "--output", str(out), "--no-programs"]
    edge = ["--format", "onnx", "--quantize", "int8", "--test-images", "8", "--calibration-batches", "1"]
    assert main([*args, *edge]) == 0
    printed = capsys.readouterr().out
    assert "device1.int8.onnx" in printed and "top-1 on 8 test images (fused): torch" in printed
    manifest = read_manifest(out)
    assert manifest.artifacts["onnx-int8"]["calibration"]["images"] == 16

    torch.save(trained.model.state_dict(), tmp_path / "model.pt")  # a bare state dict: its data set is unknown
    bare = ["export", "--checkpoint", str(tmp_path / "model.pt"), "--model", "mobilenet_v1_small"]
    bare += ["--wide-factor", "1", "--input-size", "1", "28", "28", "--switch", "[0.5, 0.5]"]
    bare += ["--output", str(tmp_path / "b"), "--no-programs"]
    assert main([*bare, "--quantize", "int8"]) == 2
    assert "data set is unknown (a bare state dict): give it (--dataset)" in capsys.readouterr().err

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "executorch" else real(n, *a))
    assert main([*args, "--format", "pte"]) == 2
    assert "the pte export needs executorch: pip install" in capsys.readouterr().err
    assert main([*args, "--format", "tflite"]) == 2
    assert "deploy export: error: argument --format: invalid choice: 'tflite'" in capsys.readouterr().err


def test_manifests_of_format_1_still_read(onnx_export, tmp_path):
    out, _ = onnx_export
    raw = json.loads((out / "manifest.json").read_text())
    for key in ("files", "artifacts", "evaluation"):
        raw.pop(key)
    for d in raw["devices"]:
        d.pop("artifacts")
    raw["format"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    old = read_manifest(tmp_path)
    assert old.format == 1 and old.files == {} and old.devices[0].artifacts == {}


def test_importing_paradis_deploy_loads_no_edge_runtime():
    script = "import sys, paradis.deploy; print(sorted(m for m in sys.modules if m.startswith(('onnx', 'executorch'))))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_an_onnx_file_naming_external_data_is_refused(onnx_export, tmp_path, monkeypatch):
    """An exported file whose tensors point to files outside it (ONNX external data): with a matching
    manifest, ONNX Runtime would read them from the working directory; the loader refuses it first."""
    import hashlib
    import json
    import shutil

    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    from paradis.deploy import ExportError
    from paradis.deploy.load import load_artifact
    from paradis.deploy.onnx import onnx_runner

    src, _ = onnx_export
    folder = tmp_path / "export"
    shutil.copytree(src, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    name = next(n for n in manifest["files"] if n.endswith(".onnx") and "int8" not in n)
    model = onnx.load_model_from_string((folder / name).read_bytes())
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    data = model.SerializeToString()
    (folder / name).write_bytes(data)
    manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.chdir(tmp_path)  # where ONNX Runtime would look for weights.bin
    (tmp_path / "weights.bin").write_bytes(b"\0" * 64)
    index = next(d["index"] for d in manifest["devices"] if name in d.get("artifacts", {}).values())
    with pytest.raises(ExportError, match=r"names external data 'weights\.bin'; refused"):
        load_artifact(folder, index, "onnx")
    with pytest.raises(ExportError, match="names external data"):
        onnx_runner(folder / name)


def _external(name: str, location: str, n: int = 10):
    import onnx

    t = onnx.TensorProto(name=name, data_type=onnx.TensorProto.FLOAT, dims=[n])
    t.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * n))):
        t.external_data.add(key=key, value=value)
    return t


def _hidden_external_data(where: str) -> bytes:
    """A model whose only external tensor hides in a place a walk over the main graph misses."""
    from onnx import TensorProto
    from onnx import helper as h

    x = h.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 10])
    y = h.make_tensor_value_info("partial", TensorProto.FLOAT, ["batch", 10])
    opsets = [h.make_opsetid("", 20)]
    if where == "function":
        const = h.make_node("Constant", [], ["w"], value=_external("c", "../secret.bin"))
        body = [const, h.make_node("Add", ["a", "w"], ["b"])]
        func = h.make_function("local", "AddSecret", ["a"], ["b"], body, opsets)
        graph = h.make_graph([h.make_node("AddSecret", ["x"], ["partial"], domain="local")], "g", [x], [y])
        model = h.make_model(graph, opset_imports=[*opsets, h.make_opsetid("local", 1)], functions=[func])
    else:  # a sparse tensor's values in a Constant's attribute
        sparse = h.make_sparse_tensor(
            _external("sv", "../secret.bin"), h.make_tensor("si", TensorProto.INT64, [10], list(range(10))), [10]
        )
        const = h.make_node("Constant", [], ["w"], sparse_value=sparse)
        graph = h.make_graph([const, h.make_node("Add", ["x", "w"], ["partial"])], "g", [x], [y])
        model = h.make_model(graph, opset_imports=opsets)
    return model.SerializeToString()


@pytest.mark.parametrize("where", ["function", "sparse-constant"])
def test_external_data_is_refused_wherever_it_hides(where):
    """Found by the second adversarial pass: a Constant inside a model-local function, or a sparse
    Constant, named a file that ONNX Runtime (given the bytes) read from the working directory."""
    from paradis.deploy import ExportError
    from paradis.deploy.onnx import refuse_external_data

    with pytest.raises(ExportError, match=r"names external data '\.\./secret\.bin'; refused"):
        refuse_external_data(_hidden_external_data(where), "device0.onnx")

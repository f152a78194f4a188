"""An export folder received from elsewhere: digests checked before any loader reads a file, names that
leave the folder refused, the manifest read as bounded JSON; a planted pickle never runs."""

import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from paradis import calibrate_bn, create_model
from paradis.deploy import (
    EdgeOptions,
    ExportError,
    TrainedModel,
    export_switch,
    load_artifact,
    load_fusion,
    load_program,
    load_subnetwork,
    read_manifest,
    verify_export,
)
from paradis.deploy.files import MAX_MANIFEST_BYTES

SWITCH = "[0.5, 0.5]"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """``[0.5, 0.5]`` of a small calibrated model: ``.pt``, ``.pt2`` and ``.onnx`` per device."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_small", num_classes=10)
    calibrate_bn(model, SWITCH, [torch.randn(8, 1, 28, 28)])
    trained = TrainedModel.of(model.eval(), "mobilenet_v1_small", (1, 28, 28), accuracy={SWITCH: 0.5})
    out = tmp_path_factory.mktemp("export") / "out"
    export_switch(trained, SWITCH, out, edge=EdgeOptions(formats=("onnx",), test_images=0))
    return out


@pytest.fixture
def copy(export, tmp_path):
    """A fresh copy of the export to tamper with."""
    return Path(shutil.copytree(export, tmp_path / "copy"))


def rewrite_manifest(folder: Path, change) -> None:
    raw = json.loads((folder / "manifest.json").read_text())
    change(raw)
    (folder / "manifest.json").write_text(json.dumps(raw))


def record_digest(folder: Path, name: str) -> None:
    """What a hostile sender does: the manifest records the digest of the file it sends."""
    data = (folder / name).read_bytes()

    def change(raw):
        raw["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    rewrite_manifest(folder, change)


class Plant:
    """A pickle that creates a marker file when unpickled (it runs nothing else)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def spies(monkeypatch):
    """Every deserializer the loaders could reach, replaced by one that records its call and refuses."""
    import onnxruntime

    calls: list[str] = []

    def spy(name):
        def refuse(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return refuse

    monkeypatch.setattr(torch, "load", spy("torch.load"))
    monkeypatch.setattr(torch.export, "load", spy("torch.export.load"))
    monkeypatch.setattr(onnxruntime, "InferenceSession", spy("onnxruntime.InferenceSession"))
    monkeypatch.setattr(pickle, "loads", spy("pickle.loads"))
    return calls


LOADERS = {
    "device0.pt": lambda f: load_subnetwork(f, 0),
    "device1.pt2": lambda f: load_program(f, 1),
    "device0.onnx": lambda f: load_artifact(f, 0, "onnx"),
    "fusion.pt": lambda f: load_fusion(f),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_one_changed_byte_is_refused_before_any_deserializer_runs(copy, name, spies):
    path = copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=rf"{name}: SHA-256 [0-9a-f]{{16}}\.\.\. does not match the manifest's"):
        LOADERS[name](copy)
    path.write_bytes(bytes(data) + b"\0")  # a changed size is caught before the file is even read
    with pytest.raises(ExportError, match=rf"{name}: \d+ bytes where the manifest records \d+"):
        LOADERS[name](copy)
    with pytest.raises(ExportError, match=r"SHA-256|bytes where"):
        verify_export(copy)
    assert spies == []


def test_the_untampered_export_loads_and_verifies(export):
    assert verify_export(export).switch == SWITCH
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch_out = load_subnetwork(export, 0)(x)
        torch.testing.assert_close(load_program(export, 0)(x), torch_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(load_artifact(export, 0, "onnx")(x), torch_out, rtol=1e-4, atol=1e-4)
    assert load_fusion(export).bias.shape == (10,)


def plant_in_pt2(program: Path, marker: Path) -> None:
    """Rewrite a ``.pt2`` archive so that one weight is a pickle (``use_pickle``) that creates ``marker``."""
    original = program.read_bytes()
    with zipfile.ZipFile(io.BytesIO(original)) as src:
        config_name = next(n for n in src.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(src.read(config_name))
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        weight_name = config_name.rsplit("/", 1)[0] + "/" + first["path_name"]
        with zipfile.ZipFile(program, "w") as out:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == config_name:
                    data = json.dumps(config).encode()
                elif info.filename == weight_name:
                    data = pickle.dumps(Plant(marker))
                out.writestr(info, data)


def test_a_pickle_planted_in_a_pt2_runs_in_torch_export_load_but_is_refused_here(copy, tmp_path):
    marker = tmp_path / "pt2-payload-ran"
    plant_in_pt2(copy / "device0.pt2", marker)
    # the threat is real: plain torch.export.load of the planted file runs the payload
    probe = tmp_path / "probe.pt2"
    shutil.copy(copy / "device0.pt2", probe)
    script = f"import torch\ntry:\n    torch.export.load({str(probe)!r})\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, check=True)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ExportError, match=r"does not match the manifest|bytes where the manifest records"):
        load_program(copy, 0)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["device0.pt", "fusion.pt"])
def test_a_planted_pickle_with_a_matching_digest_is_still_refused_by_weights_only(copy, name, tmp_path):
    """A hostile sender can make the manifest match; ``.pt`` files are then still read weights-only."""
    marker = tmp_path / "pt-payload-ran"
    torch.save({"x": Plant(marker)}, copy / name)
    torch.load(copy / name, weights_only=False)  # the payload is live: a plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    record_digest(copy, name)
    with pytest.raises(ExportError, match=rf"{name}' cannot be loaded: Weights only load failed"):
        load_subnetwork(copy, 0) if name == "device0.pt" else load_fusion(copy)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "sub/../../x", "..", "a\\..\\b", "~/x", "", "x\x00y"])
@pytest.mark.parametrize("field", ["state_file", "program_file", "artifact", "fusion", "files"])
def test_a_manifest_naming_a_file_outside_the_folder_is_refused(copy, name, field):
    def change(raw):
        if field == "fusion":
            raw["fusion"]["file"] = name
        elif field == "files":
            raw["files"][name] = {"bytes": 1, "sha256": "0" * 64}
        elif field == "artifact":
            raw["devices"][0]["artifacts"]["onnx"] = name
        else:
            raw["devices"][0][field] = name

    rewrite_manifest(copy, change)
    with pytest.raises(ExportError, match=r"leaves the export folder|is not a non-empty string") as err:
        read_manifest(copy)
    assert "\n" not in str(err.value)


def test_symbolic_links_that_leave_the_folder_are_refused(copy, tmp_path):
    outside = tmp_path / "outside.pt"
    shutil.move(copy / "device0.pt", outside)
    os.symlink(outside, copy / "device0.pt")  # same bytes, same digest: still refused
    with pytest.raises(ExportError, match=r"'device0\.pt' is a symbolic link that leaves the export folder"):
        load_subnetwork(copy, 0)
    os.unlink(copy / "device0.pt")
    shutil.move(outside, copy / "real0.pt")
    os.symlink("real0.pt", copy / "device0.pt")  # a link inside the folder is fine
    assert load_subnetwork(copy, 0) is not None
    shutil.move(copy / "manifest.json", tmp_path / "manifest.json")
    os.symlink(tmp_path / "manifest.json", copy / "manifest.json")
    with pytest.raises(ExportError, match=r"'manifest\.json' is a symbolic link that leaves"):
        read_manifest(copy)


def test_the_manifest_is_bounded_strict_json(copy):
    path = copy / "manifest.json"
    raw = json.loads(path.read_text())
    cases = {
        "more than the limit": json.dumps({**raw, "source": "x" * MAX_MANIFEST_BYTES}),
        "NaN is not a finite number": path.read_text().replace('"accuracy": 0.5', '"accuracy": NaN'),
        "not valid JSON \\(RecursionError": "[" * 100_000 + "]" * 100_000,
        "not valid JSON \\(UnicodeDecodeError": b"\xff\xfe{}",
        "a JSON object expected, got list": "[]",
        "model.num_classes 1000000000 is outside": json.dumps({**raw, "model": {**raw["model"], "num_classes": 10**9}}),
        "accuracy 1.5 is outside": json.dumps({**raw, "accuracy": 1.5}),
        "model.rounding 'exec' is not one of": json.dumps({**raw, "model": {**raw["model"], "rounding": "exec"}}),
        "is not a SHA-256 hex digest": json.dumps({**raw, "files": {"fusion.pt": {"bytes": 1, "sha256": "abc"}}}),
        "unknown artifact kind 'exe'": json.dumps(
            {**raw, "devices": [{**raw["devices"][0], "artifacts": {"exe": "a.exe"}}, raw["devices"][1]]}
        ),
    }
    for needle, text in cases.items():
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(ExportError, match=needle) as err:
            read_manifest(copy)
        assert "\n" not in str(err.value) and len(str(err.value)) < 800, needle


def test_a_missing_digest_is_refused(copy):
    rewrite_manifest(copy, lambda raw: raw["files"].pop("device0.pt"))
    with pytest.raises(ExportError, match=r"the manifest records no SHA-256 for 'device0\.pt'"):
        load_subnetwork(copy, 0)
    rewrite_manifest(copy, lambda raw: raw.update(format=1, files={}))  # a format-1 export: no digests
    assert read_manifest(copy).format == 1
    with pytest.raises(ExportError, match=r"records no SHA-256 for 'device1\.pt2'"):
        load_program(copy, 1)
    with pytest.raises(ExportError, match=r"records no SHA-256 for 'device1\.onnx'"):
        load_artifact(copy, 1, "onnx")


def test_an_onnx_file_cannot_pull_in_files_beside_it(copy):
    """ONNX Runtime receives the verified bytes, so external data (a path in the file) is not read."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    (copy / "secret.bin").write_bytes(b"0123456789abcdef")
    w = numpy_helper.from_array(torch.zeros(4).numpy(), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "secret.bin"), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("partial", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["partial"])], "g", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(copy / "device0.onnx"))
    record_digest(copy, "device0.onnx")
    with pytest.raises(ExportError, match=r"device0\.onnx' cannot be loaded by its runtime") as err:
        load_artifact(copy, 0, "onnx")
    assert "\n" not in str(err.value)

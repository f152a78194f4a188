"""Export of a switch: per-device files, manifest round trip, programs that load without paradis."""

import json
import subprocess
import sys

import pytest
import torch

from paradis.config import RunConfig
from paradis.costs import profile
from paradis.data.registry import dataset_info
from paradis.deploy import (
    ExportError,
    Manifest,
    export_switch,
    load_fusion,
    load_program,
    load_subnetwork,
    load_trained,
    read_manifest,
    switch_table,
    verify_export,
)
from paradis.engine import run_training
from paradis.tasks import model_arguments
from tests.deploy.recipes import recipe


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real checkpoint of paradis.engine: one short epoch on synthetic data, evaluated."""
    folder = tmp_path_factory.mktemp("ckpt")
    cfg = RunConfig.model_validate(
        {
            "model": {"name": "mobilenet_v1_small"},
            "data": {"name": "synthetic", "synthetic_train": 64, "synthetic_test": 64},
            "training": {"epochs": 1, "batch_size": 32, "max_steps_per_epoch": 2},
            "evaluation": {"calibration_batches": 1},
            "device": "cpu",
        }
    )
    run_training(cfg, checkpoint_dir=folder)
    return folder / "checkpoint.pt"


@pytest.fixture(scope="module")
def trained(checkpoint):
    return load_trained(checkpoint)


def test_checkpoint_gives_model_input_size_and_the_evaluated_accuracies(trained, checkpoint):
    assert trained.model_name == "mobilenet_v1_small" and trained.input_size == (1, 28, 28)
    assert (trained.num_classes, trained.in_chans, trained.wide_factor) == (10, 1, 1.2)
    history = torch.load(checkpoint, weights_only=True)["history"]
    assert trained.accuracy["[0.5, 0.5]"] == history[-1]["acc/0.5-0.5"]
    assert set(trained.accuracy) == {"[1.2]", "[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]"}


def test_manifest_round_trip_and_the_files_rebuild_the_switch(trained, tmp_path):
    s = "[0.5, 0.25, 0.25]"
    manifest = export_switch(trained, s, tmp_path, programs=False)
    again = read_manifest(tmp_path)
    assert again == manifest
    assert Manifest.from_json(again.to_json()) == manifest
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert raw["switch"] == s and raw["fusion"]["op"] == "sum+bias" and raw["input"]["shape"] == ["batch", 1, 28, 28]
    # the normalization the training data used, so that a device without this package can prepare inputs
    assert (raw["input"]["mean"], raw["input"]["std"]) == ([0.5], [0.25])  # synthetic data, one channel
    prof = profile(trained.model, s, (1, 28, 28))
    assert manifest.accuracy == trained.accuracy[s]
    assert (manifest.macs, manifest.max_device_macs, manifest.params) == (prof.macs, prof.max_device_macs, prof.params)
    assert [d.macs for d in manifest.devices] == list(prof.device_macs)
    assert [d.params for d in manifest.devices] == list(prof.device_params)
    assert [d.channels for d in manifest.devices] == ["[0, 0.5)", "[0.5, 0.75)", "[0.75, 1)"]

    x = torch.randn(5, 1, 28, 28)
    fusion = load_fusion(tmp_path)
    with torch.no_grad():
        got = fusion([load_subnetwork(tmp_path, i)(x) for i in range(3)])
        want = trained.model.eval()(x, s)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ExportError, match="exported without programs"):
        load_program(tmp_path, 0)
    with pytest.raises(ExportError, match=r"switch \[0.5, 0.25, 0.25\] has no device 3"):
        load_program(tmp_path, 3)
    (tmp_path / "fusion.pt").write_text("not a tensor file")
    with pytest.raises(ExportError, match=r"fusion\.pt: \d+ bytes where the manifest records"):
        load_fusion(tmp_path)
    (tmp_path / "device1.pt").write_text("damaged")
    with pytest.raises(ExportError, match=r"device1\.pt: \d+ bytes where the manifest records"):
        load_subnetwork(tmp_path, 1)


def test_each_device_file_holds_only_its_share(trained, tmp_path):
    full = export_switch(trained, "[1.0]", tmp_path / "full", programs=False)
    quarter = export_switch(trained, "[4x0.25]", tmp_path / "quarter", programs=False)
    full_bytes = full.devices[0].file_bytes
    for d in quarter.devices:
        state = torch.load(tmp_path / "quarter" / d.state_file, weights_only=True)
        tensor_bytes = sum(t.numel() * t.element_size() for t in state.values())
        params = sum(t.numel() for k, t in state.items() if not k.endswith(("running_mean", "running_var", "_tracked")))
        assert params == d.params  # its own parameters, nothing else of the model
        # the file is its tensors plus a bounded bookkeeping overhead per tensor
        assert tensor_bytes < d.file_bytes < tensor_bytes + 1200 * len(state)
        # width squared for the convolutions: a quarter network is far below a quarter of the full one
        assert d.file_bytes < 0.2 * full_bytes
    whole = torch.load(tmp_path / "full" / "device0.pt", weights_only=True)
    assert (
        sum(t.numel() for k, t in whole.items() if "running" not in k and "tracked" not in k) == full.devices[0].params
    )


def test_programs_load_and_run_without_paradis(trained, tmp_path):
    s = "[0.5, 0.5]"
    export_switch(trained, s, tmp_path / "export")
    x = torch.randn(3, 1, 28, 28)  # another batch size than the one exported with
    with torch.no_grad():
        want = trained.model.eval()(x, s)
    torch.save({"x": x, "want": want}, tmp_path / "io.pt")
    torch.testing.assert_close(
        load_fusion(tmp_path / "export")([load_program(tmp_path / "export", i)(x) for i in range(2)]), want
    )
    code = recipe("this package, a device runs", tmp_path / "export")
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "paradis" or name.startswith("paradis."):
            raise ImportError("paradis is blocked in this test")
sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".") and "/work/" not in p or "site-packages" in p]
import torch
want = torch.load({str(tmp_path / "io.pt")!r}, weights_only=True)
x = want["x"]
{code}
torch.testing.assert_close(logits, want["want"], rtol=1e-5, atol=1e-5)
assert not any(m == "paradis" or m.startswith("paradis.") for m in sys.modules)
print("ok", len(parts))
"""
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok 2"
    (tmp_path / "export" / "device1.pt2").write_bytes(b"PK" + b"\0" * 64)  # damaged: the recipe refuses it
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip() == "device1.pt2: SHA-256 does not match the manifest; not loaded"


def test_switch_table_and_clear_errors(trained, tmp_path):
    rows = {str(r.switch): r for r in switch_table(trained, ["[1.0]", "[0.5, 0.5]"], measure_batch=4)}
    assert rows["[0.5, 0.5]"].accuracy == trained.accuracy["[0.5, 0.5]"]
    assert len(rows["[0.5, 0.5]"].device_seconds) == 2 and all(t > 0 for t in rows["[0.5, 0.5]"].device_seconds)
    assert sum(rows["[0.5, 0.5]"].device_macs) < rows["[1.0]"].device_macs[0]
    with pytest.raises(ExportError, match=r"switch \[8x0.125\] has no BN statistics"):
        export_switch(trained, "[8x0.125]", tmp_path)
    with pytest.raises(ExportError, match=r"has no manifest\.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": 1, "switch": "[0.5, 0.5]"}')
    with pytest.raises(ExportError, match="not a valid ParaDiS manifest"):
        read_manifest(tmp_path)
    with pytest.raises(ExportError, match="does not exist"):
        load_trained(tmp_path / "nothing.pt")
    torch.save(trained.model.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ExportError, match="bare state dict: give the model name"):
        load_trained(tmp_path / "model.pt")
    bare = load_trained(tmp_path / "model.pt", model_name="mobilenet_v1_small", input_size=(1, 28, 28))
    assert bare.accuracy == {} and bare.model.has_bn_stats("[0.5, 0.5]")


def test_command_line_from_a_checkpoint_and_from_an_mlflow_run(checkpoint, tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from orchestration.deploy import main

    out = tmp_path / "a"
    args = ["export", "--checkpoint", str(checkpoint), "--switch", "[0.5, 0.5]", "--output", str(out), "--no-programs"]
    assert main(args) == 0
    assert read_manifest(out).switch == "[0.5, 0.5]" and (out / "device1.pt").is_file()
    assert "exported switch [0.5, 0.5]" in capsys.readouterr().out
    assert (
        main(["export", "--checkpoint", str(checkpoint), "--switch", "[3x0.5]", "--output", str(tmp_path / "c")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("deploy export: error: switch [3x0.5] spans width 1.5") and "\n" not in err

    # a trial run as the study's tracker leaves it: the checkpoint artifact and acc/* metrics
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("deploy", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp).info.run_id
    client.log_artifact(run, str(checkpoint), "checkpoint")
    client.log_metric(run, "acc/0.5-0.5", 0.875)
    client.log_metric(run, "acc/target", 0.9)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "b"
    args = ["export", "--run-id", run, "--switch", "[0.5, 0.5]", "--output", str(out), "--no-programs"]
    assert main(args) == 0
    manifest = read_manifest(out)
    assert manifest.accuracy == 0.875 and manifest.source.startswith(f"mlflow run {run}")
    assert manifest.devices[0].program_file is None
    assert main(["export", "--run-id", "0" * 32, "--switch", "[0.5, 0.5]", "--output", str(tmp_path / "d")]) == 2
    assert "MLflow run '00000000000000000000000000000000' not found" in capsys.readouterr().err


def test_export_never_loses_work(trained, tmp_path, monkeypatch):
    import paradis.deploy.export as export_module

    out = tmp_path / "out"
    export_switch(trained, "[0.5, 0.5]", out)
    old = read_manifest(out)
    with pytest.raises(ExportError, match=r"is not empty \('device0\.pt', 'device0\.pt2', .*give --force"):
        export_switch(trained, "[1.0]", out)
    # a failed export leaves the old one as it was
    monkeypatch.setattr(export_module, "profile", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        export_switch(trained, "[1.0]", out, overwrite=True)
    monkeypatch.undo()
    assert verify_export(out) == old and sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left
    # replacing: exactly the listed files go, the new export's come
    new = export_switch(trained, "[1.0]", out, programs=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([*new.files, "manifest.json"])
    assert verify_export(out).switch == "[1.0]"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"does not list: 'notes\.txt'; nothing removed"):
        export_switch(trained, "[0.5, 0.5]", out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and verify_export(out).switch == "[1.0]"


def test_a_us_model_deploys_with_the_rounding_it_was_trained_with(tmp_path):
    """US models round widths as US-Nets does; the checkpoint records it, the export rebuilds it."""
    cfg = RunConfig.model_validate(
        {
            "model": {"name": "mobilenet_v1_small"},
            "data": {"name": "synthetic", "synthetic_train": 64, "synthetic_test": 32},
            "training": {"method": "us", "epochs": 1, "batch_size": 32, "max_steps_per_epoch": 1},
            "evaluation": {"calibration_batches": 1, "switches": ["[0.35]", "[1.0]"]},
            "device": "cpu",
        }
    )
    run_training(cfg, checkpoint_dir=tmp_path / "ckpt")
    us = load_trained(tmp_path / "ckpt" / "checkpoint.pt")
    assert us.model.rounding == "us-nets" and us.model_args()["rounding"] == "us-nets"
    # deploy rebuilds the model the trainer built: the arguments of the run's configuration and data set
    assert us.model_args() == model_arguments(cfg, dataset_info(cfg.data.name))
    assert us.model.stem.out_ranges(us.model.resolve("[0.35]")) == ((0, 8),)  # make_divisible(16 * 0.35) = 8
    manifest = export_switch(us, "[0.35]", tmp_path / "out", programs=False)
    net = load_subnetwork(tmp_path / "out", 0)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(net(x) + load_fusion(tmp_path / "out", manifest).bias, us.model.eval()(x, "[0.35]"))

"""A corpus of careless and hostile inputs to every deploy command: each is refused with exit code 2 and
exactly one stderr line ``deploy <cmd>: error: ...`` naming the problem, never a traceback, quickly,
without starting Ray and without touching an existing export. Then a fuzz test (hypothesis) of the
``plan --table`` and ``export`` values, in process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from orchestration.deploy import main
from paradis import calibrate_bn, create_model
from paradis.deploy import TrainedModel, export_switch
from paradis.deploy.latency import FORMAT

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {
    "model": {"name": "mobilenet_v1_small"},
    "data": {"name": "synthetic"},
    "training": {"wide_factor": 1.2, "seed": 0},
}
HISTORY = [{"acc/1.0": 0.9, "acc/0.5-0.5": 0.8}]
ROW = {"switch": "[0.5, 0.5]", "accuracy": 0.8, "device_macs": [1000, 1000], "device_params": [10, 10]}
TIMES: dict[str, tuple[str, float]] = {}  # case -> (command, seconds to the refusal)


class Plant:
    """A pickle that would create a marker file if it were ever unpickled with code execution."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Checkpoints, tables and export folders, good and bad, in one folder."""
    w = tmp_path_factory.mktemp("deploy-inputs")
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_small", num_classes=10)
    for s in ("[1.0]", "[0.5, 0.5]"):
        calibrate_bn(model, s, [torch.randn(8, 1, 28, 28)])
    state = model.state_dict()
    torch.save({"model": state, "config": CONFIG, "history": HISTORY}, w / "good.pt")
    _bad_checkpoints(w, state)
    _bad_tables(w)
    trained = TrainedModel.of(model.eval(), "mobilenet_v1_small", (1, 28, 28), accuracy={"[0.5, 0.5]": 0.8})
    export_switch(trained, "[0.5, 0.5]", w / "export", programs=False)
    _bad_exports(w)
    _latency_tables(w)
    (w / "a-file").write_text("not a folder")
    return w


def _latency(device: str, batch: int = 8, p50: float = 0.001) -> dict:
    part = {"index": 0, "width": 1.0, "torch": {"p50_s": p50, "p95_s": 0.002}}
    row = {"switch": "[1.0]", "accuracy": 0.9, "device_macs": [1000], "device_params": [10], "parts": [part]}
    return {"format": FORMAT, "version": 1, "device": device, "batch": batch, "runtimes": ["torch"], "switches": [row]}


def _latency_tables(w: Path) -> None:
    for folder, tables in {
        "lat-good": {"a": _latency("a"), "b": _latency("b")},
        "lat-batch": {"a": _latency("a", 8), "b": _latency("b", 64)},
        "lat-dup": {"a": _latency("a"), "a-again": _latency("a")},
        "lat-bad": {"a": {**_latency("a"), "format": "csv"}},
        "lat-p50-above-p95": {"a": _latency("a", p50=0.003)},
        "lat-two-models": {
            "a": {**_latency("a"), "model": {"name": "mobilenet_v1_small", "num_classes": 10, "in_chans": 1}},
            "b": {**_latency("b"), "model": {"name": "resnet18", "num_classes": 1000, "in_chans": 3}},
        },
        "lat-other-model": {"a": {**_latency("a"), "model": {"name": "resnet18", "num_classes": 1000, "in_chans": 3}}},
        "prof-out": {"a": _latency("a")},
    }.items():
        (w / folder).mkdir()
        for name, data in tables.items():
            (w / folder / f"{name}.json").write_text(json.dumps(data))
    (w / "lat-empty").mkdir()


def _bad_checkpoints(w: Path, state: dict) -> None:
    good = (w / "good.pt").read_bytes()
    (w / "truncated.pt").write_bytes(good[: len(good) // 2])
    (w / "empty.pt").write_bytes(b"")
    (w / "json.pt").write_text('{"model": {}}')
    torch.save({"model": state, "config": "mobilenet", "history": HISTORY}, w / "config-str.pt")
    torch.save({"model": state, "config": {"model": "mobilenet"}}, w / "config-model-str.pt")
    torch.save({"model": state, "config": {"model": {"name": 5}}}, w / "config-name-int.pt")
    torch.save({"model": state, "config": {**CONFIG, "training": {"wide_factor": "wide"}}}, w / "wf-str.pt")
    torch.save({"model": state, "config": {**CONFIG, "training": {"wide_factor": float("nan")}}}, w / "wf-nan.pt")
    torch.save({"model": state, "config": CONFIG, "history": 5}, w / "history-int.pt")
    torch.save({"model": state, "config": CONFIG, "history": ["x"]}, w / "history-str.pt")
    torch.save({"model": state, "config": CONFIG, "history": [{"acc/1.0": "high"}]}, w / "history-value.pt")
    torch.save({"model": state, "config": CONFIG, "history": [{"acc/1.0": 1.5}]}, w / "history-range.pt")
    torch.save({"model": "weights", "config": CONFIG}, w / "model-str.pt")
    torch.save({"model": {**state, "extra": 3}, "config": CONFIG}, w / "state-int.pt")
    torch.save([1, 2, 3], w / "list.pt")
    half = {k: v[: max(1, v.shape[0] // 2)] if v.dim() else v for k, v in state.items()}
    torch.save({"model": half, "config": CONFIG}, w / "wrong-shapes.pt")
    torch.save({"model": state, "config": {**CONFIG, "data": {"name": "mnist-like"}}}, w / "unknown-data.pt")
    torch.save({"model": state, "config": {**CONFIG, "model": {"name": "vgg16"}}}, w / "unknown-model.pt")
    torch.save({"x": Plant(w / "MARKER")}, w / "planted.pt")
    (w / "history-dir").mkdir()
    torch.save(state, w / "history-dir" / "model.pt")
    (w / "history-dir" / "history.json").write_text("[{]")


def _bad_tables(w: Path) -> None:
    tables = {
        "table-not-json": "[{",
        "table-empty": "[]",
        "table-object": json.dumps(ROW),
        "table-row-number": "[1]",
        "table-row-list": json.dumps([[ROW]]),
        "table-row-string": '["[0.5, 0.5]"]',
        "table-missing-key": json.dumps([{k: v for k, v in ROW.items() if k != "device_params"}]),
        "table-negative-macs": json.dumps([{**ROW, "device_macs": [-5, 1000]}]),
        "table-string-macs": json.dumps([{**ROW, "device_macs": ["1000", "1000"]}]),
        "table-bool-params": json.dumps([{**ROW, "device_params": [True, True]}]),
        "table-nan-accuracy": json.dumps([ROW]).replace("0.8", "NaN"),
        "table-accuracy-above-1": json.dumps([{**ROW, "accuracy": 80.0}]),
        "table-accuracy-negative": json.dumps([{**ROW, "accuracy": -0.1}]),
        "table-negative-seconds": json.dumps([{**ROW, "device_seconds": [0.001, -0.001]}]),
        "table-infinite-seconds": json.dumps([{**ROW, "device_seconds": [0.001, 1e999]}]),
        "table-wrong-length": json.dumps([{**ROW, "device_macs": [1000]}]),
        "table-bad-switch": json.dumps([{**ROW, "switch": "[half, half]"}]),
        "table-duplicate": json.dumps([ROW, ROW]),
        "table-deep": "[" * 50_000 + "]" * 50_000,
        "table-huge-macs": json.dumps([{**ROW, "device_macs": [10**400, 1000]}]),
        "table-huge-params": json.dumps([{**ROW, "device_params": [10, 10**400]}]),
        "table-duplicate-key": json.dumps([ROW])[:-2] + ', "accuracy": 0.1}]',
        "table-huge": json.dumps([{**ROW, "note": "x" * (17 << 20)}]),
    }
    for name, text in tables.items():
        (w / f"{name}.json").write_text(text)
    (w / "table-good.json").write_text(json.dumps([ROW]))


def _bad_exports(w: Path) -> None:
    raw = json.loads((w / "export" / "manifest.json").read_text())
    variants = {
        "escape": lambda m: m["devices"][0].update(state_file="../good.pt"),
        "absolute": lambda m: m["devices"][1].update(state_file="/etc/passwd"),
        "nan": None,
        "format": lambda m: m.update(format=99),
        "huge-classes": lambda m: m["model"].update(num_classes=10**12),
        "no-digest": lambda m: m["files"].pop("device1.pt"),
        "huge-file-bytes": lambda m: m["devices"][0].update(file_bytes=10**4000),
        "artifact-info-empty": lambda m: m.update(artifacts={"onnx": {}}),
        "evaluation-garbage": lambda m: m.update(evaluation={"images": 5, "top1": {"torch": 2.0}, "seconds": {}}),
    }
    for name, change in variants.items():
        folder = w / f"export-{name}"
        shutil.copytree(w / "export", folder)
        m = json.loads(json.dumps(raw))
        if change is not None:
            change(m)
        text = json.dumps(m).replace('"accuracy": 0.8', '"accuracy": NaN') if name == "nan" else json.dumps(m)
        (folder / "manifest.json").write_text(text)
    shutil.copytree(w / "export", w / "export-duplicate-key")  # the first entry false, the second true
    text = (w / "export" / "manifest.json").read_text()
    start = text.index('"device0.pt": {')
    bogus = '"device0.pt": {"bytes": 1, "sha256": "' + "0" * 64 + '"}, '
    (w / "export-duplicate-key" / "manifest.json").write_text(text[:start] + bogus + text[start:])
    shutil.copytree(w / "export", w / "export-tampered")
    data = bytearray((w / "export-tampered" / "device0.pt").read_bytes())
    data[len(data) // 2] ^= 1
    (w / "export-tampered" / "device0.pt").write_bytes(bytes(data))
    shutil.copytree(w / "export", w / "export-unlisted")
    (w / "export-unlisted" / "notes.txt").write_text("my notes: not part of the export")
    (w / "not-an-export").mkdir()
    (w / "not-an-export" / "results.csv").write_text("a,b\n")
    (w / "export-invalid-json").mkdir()
    (w / "export-invalid-json" / "manifest.json").write_text("{'format': 2}")


def ck(name: str) -> list[str]:
    return ["--checkpoint", f"{{w}}/{name}"]


PLAN = ["plan", "--budget-ms", "5", "--macs-per-second", "1e9"]
SERVE = ["serve-bench", *ck("good.pt")]
EXPORT = ["export", "--switch", "[0.5, 0.5]", "--output", "{w}/new-out"]
# case -> (argv with {w} for the world folder, text the one error line must contain)
CORPUS: dict[str, tuple[list[str], str]] = {
    # export: checkpoints
    "export-missing-file": ([*EXPORT, *ck("nothing.pt")], "does not exist"),
    "export-truncated": ([*EXPORT, *ck("truncated.pt")], "cannot be read"),
    "export-empty-file": ([*EXPORT, *ck("empty.pt")], "cannot be read"),
    "export-json-as-checkpoint": ([*EXPORT, *ck("json.pt")], "cannot be read"),
    "export-config-str": ([*EXPORT, *ck("config-str.pt")], "its config is not a mapping"),
    "export-config-model-str": ([*EXPORT, *ck("config-model-str.pt")], "config.model is not a mapping"),
    "export-config-name-int": ([*EXPORT, *ck("config-name-int.pt")], "model 5 is not a registered model"),
    "export-wide-factor-str": ([*EXPORT, *ck("wf-str.pt")], "wide factor 'wide' is not a finite number"),
    "export-wide-factor-nan": ([*EXPORT, *ck("wf-nan.pt")], "wide factor nan is not a finite number"),
    "export-history-int": ([*EXPORT, *ck("history-int.pt")], "its history is not a list of metrics"),
    "export-history-str": ([*EXPORT, *ck("history-str.pt")], "history[0] is not a mapping"),
    "export-history-value": ([*EXPORT, *ck("history-value.pt")], "= 'high' is not a number"),
    "export-history-range": ([*EXPORT, *ck("history-range.pt")], "accuracy of switch [1.0] 1.5 is outside"),
    "export-model-str": ([*EXPORT, *ck("model-str.pt")], "its model is not a state dict of tensors"),
    "export-state-int": ([*EXPORT, *ck("state-int.pt")], "its model is not a state dict of tensors"),
    "export-list": ([*EXPORT, *ck("list.pt")], "is not a checkpoint or a state dict (a list)"),
    "export-wrong-shapes": ([*EXPORT, *ck("wrong-shapes.pt")], "does not fit model 'mobilenet_v1_small'"),
    "export-unknown-data": ([*EXPORT, *ck("unknown-data.pt")], "the input size is unknown"),
    "export-unknown-model": ([*EXPORT, *ck("unknown-model.pt")], "model 'vgg16' is not a registered model"),
    "export-planted-pickle": ([*EXPORT, *ck("planted.pt")], "Weights only load failed"),
    "export-bad-history-json": (
        [*EXPORT, *ck("history-dir"), "--model", "mobilenet_v1_small", "--input-size", "1", "28", "28"],
        "history '",
    ),
    "export-folder-without-checkpoint": ([*EXPORT, *ck("not-an-export")], "holds neither checkpoint.pt"),
    # export: values
    "export-switch-garbage": (["export", *ck("good.pt"), "--switch", "[half]", "--output", "{w}/o"], "not a number"),
    "export-switch-huge": (["export", *ck("good.pt"), "--switch", "9" * 5000, "--output", "{w}/o"], "longer than"),
    "export-switch-too-wide": (["export", *ck("good.pt"), "--switch", "[3x0.5]", "--output", "{w}/o"], "spans"),
    "export-switch-no-stats": (["export", *ck("good.pt"), "--switch", "[4x0.25]", "--output", "{w}/o"], "no BN"),
    "export-input-channels": ([*EXPORT, *ck("good.pt"), "--input-size", "3", "28", "28"], "has 3 channels"),
    "export-input-huge": ([*EXPORT, *ck("good.pt"), "--input-size", "1", "99999", "99999"], "is outside [1, 8192]"),
    "export-test-images-negative": ([*EXPORT, *ck("good.pt"), "--test-images", "-1"], "--test-images: '-1'"),
    "export-threads-zero": ([*EXPORT, *ck("good.pt"), "--threads", "0"], "argument --threads: '0' is outside"),
    "export-wide-factor-arg": ([*EXPORT, *ck("good.pt"), "--wide-factor", "inf"], "not a finite number"),
    "export-format-unknown": ([*EXPORT, *ck("good.pt"), "--format", "tflite"], "invalid choice: 'tflite'"),
    "export-no-source": ([*EXPORT], "one of the arguments --checkpoint --run-id --model-uri is required"),
    "export-bad-run-id": ([*EXPORT, "--run-id", "../../etc"], "is not an MLflow run id"),
    "export-relative-sqlite": (
        [*EXPORT, "--run-id", "0" * 32, "--tracking-uri", "sqlite:///rel.db"],
        "relative path",
    ),
    "export-output-is-file": (["export", *ck("good.pt"), "--switch", "[1.0]", "--output", "{w}/a-file"], "is a file"),
    "export-output-not-empty": (
        ["export", *ck("good.pt"), "--switch", "[1.0]", "--output", "{w}/not-an-export"],
        "is not empty ('results.csv'); give --force",
    ),
    "export-force-no-manifest": (
        ["export", *ck("good.pt"), "--switch", "[1.0]", "--output", "{w}/not-an-export", "--force"],
        "holds no readable export to replace",
    ),
    "export-force-unlisted": (
        ["export", *ck("good.pt"), "--switch", "[1.0]", "--output", "{w}/export-unlisted", "--force"],
        "holds files its manifest does not list: 'notes.txt'; nothing removed",
    ),
    "export-unknown-option": ([*EXPORT, *ck("good.pt"), "--switches", "[1.0]"], "unrecognized arguments"),
    # plan: tables
    **{
        f"plan-{name}": (["plan", "--budget-ms", "5", "--macs-per-second", "1e9", "--table", f"{{w}}/{name}.json"], n)
        for name, n in {
            "table-not-json": "not valid JSON",
            "table-empty": "must be a non-empty JSON list of rows",
            "table-object": "must be a non-empty JSON list of rows",
            "table-row-number": "row 1 is not an object",
            "table-row-list": "is not an object",
            "table-row-string": "row '[0.5, 0.5]' is not an object",
            "table-missing-key": "lacks 'device_params'",
            "table-negative-macs": "device_macs entry -5 is outside",
            "table-string-macs": "device_macs entry '1000' is not an integer",
            "table-bool-params": "device_params entry True is not an integer",
            "table-nan-accuracy": "NaN is not a finite number",
            "table-accuracy-above-1": "accuracy 80.0 is outside [0, 1]",
            "table-accuracy-negative": "accuracy -0.1 is outside [0, 1]",
            "table-negative-seconds": "device_seconds entry -0.001 is outside",
            "table-infinite-seconds": "Infinity is not a finite number",
            "table-wrong-length": "device_macs has 1 entries for 2 sub-networks",
            "table-bad-switch": "'half' is not a number",
            "table-duplicate": "switch [0.5, 0.5] has two rows",
            "table-deep": "not valid JSON (RecursionError",
            "table-huge-macs": "is outside [0, 1000000000000000000]",
            "table-huge-params": "is outside [0, 1000000000000000000]",
            "table-duplicate-key": "the key 'accuracy' appears twice in an object",
            "table-huge": "more than the limit",
            "table-missing": "does not exist",
        }.items()
    },
    # plan: numbers
    "plan-budget-nan": ([*PLAN[:1], "--budget-ms", "nan", "--table", "{w}/table-good.json"], "not a finite number"),
    "plan-budget-negative": (["plan", "--budget-ms", "-1", "--table", "{w}/table-good.json"], "is outside (0"),
    "plan-budget-zero": (["plan", "--budget-ms", "0", "--table", "{w}/table-good.json"], "is outside (0"),
    "plan-budget-text": (["plan", "--budget-ms", "soon", "--table", "{w}/table-good.json"], "is not a number"),
    "plan-overhead-negative": ([*PLAN, "--overhead-ms", "-2", "--table", "{w}/table-good.json"], "outside [0"),
    "plan-overhead-nan": ([*PLAN, "--overhead-ms", "NaN", "--table", "{w}/table-good.json"], "not a finite number"),
    "plan-rate-zero": (["plan", "--budget-ms", "5", "--macs-per-second", "0", "--table", "{w}/x.json"], "outside (0"),
    "plan-devices-huge": ([*PLAN, "--devices", "1000000000", "--table", "{w}/table-good.json"], "outside [1, 256]"),
    "plan-devices-zero": ([*PLAN, "--devices", "0", "--table", "{w}/table-good.json"], "outside [1, 256]"),
    "plan-device-speed-nan": ([*PLAN, "--device", "a:nan", "--table", "{w}/table-good.json"], "speed nan must be"),
    "plan-device-speed-negative": ([*PLAN, "--device", "a:-1", "--table", "{w}/table-good.json"], "speed -1.0 must"),
    "plan-device-memory-absurd": (
        [*PLAN, "--device", "a:1:" + "9" * 40 + "GB", "--table", "{w}/table-good.json"],
        "is not between 1 byte and 1 EiB",
    ),
    "plan-device-duplicate": (
        [*PLAN, "--device", "a", "--device", "a", "--table", "{w}/table-good.json"],
        "device names must be distinct",
    ),
    "plan-device-name-empty": ([*PLAN, "--device", ":1", "--table", "{w}/table-good.json"], "expected NAME"),
    "plan-measure-batch-huge": ([*PLAN, *ck("good.pt"), "--measure-batch", "10000000"], "outside [1, 65536]"),
    "plan-measure-batch-bytes": (
        [*PLAN, *ck("good.pt"), "--measure-batch", "65536", "--input-size", "1", "512", "512"],
        "GiB of input, more than 1 GiB",
    ),
    "plan-no-source": (
        ["plan", "--budget-ms", "5"],
        "give --table, --checkpoint, --run-id, --model-uri or --latency-table",
    ),
    "plan-nothing-fits": ([*PLAN[:3], "--macs-per-second", "1", "--table", "{w}/table-good.json"], "no switch fits"),
    "plan-save-table-folder": ([*PLAN, "--table", "{w}/table-good.json", "--save-table", "{w}"], "is a folder"),
    "plan-switches-no-stats": ([*PLAN, *ck("good.pt"), "--switches", "[4x0.25]"], "has no BN statistics"),
    "plan-checkpoint-truncated": ([*PLAN, *ck("truncated.pt")], "cannot be read"),
    # serve-bench: all refused before Ray starts
    "serve-switch-no-stats": ([*SERVE, "--switch", "[4x0.25]"], "--switch [4x0.25] has no BN statistics"),
    "serve-switch-garbage": ([*SERVE, "--switch", "[1.0"], "unbalanced brackets"),
    "serve-too-few-devices": ([*SERVE, "--switch", "[0.5, 0.5]", "--devices", "1"], "needs 2 devices"),
    "serve-devices-huge": ([*SERVE, "--devices", "100000"], "outside [1, 256]"),
    "serve-batch-huge": ([*SERVE, "--batch", "1000000000"], "outside [1, 65536]"),
    "serve-batch-bytes": ([*SERVE, "--batch", "65536", "--input-size", "1", "256", "256"], "GiB of input"),
    "serve-iters-zero": ([*SERVE, "--iters", "0"], "outside [1, 100000]"),
    "serve-gpus-nan": ([*SERVE, "--gpus-per-device", "nan"], "not a finite number"),
    "serve-threads-negative": ([*SERVE, "--threads", "-4"], "outside [1, 1024]"),
    "serve-checkpoint-planted": (["serve-bench", *ck("planted.pt")], "Weights only load failed"),
    "serve-checkpoint-history": (["serve-bench", *ck("history-str.pt")], "history[0] is not a mapping"),
    # verify: export folders
    "verify-missing": (["verify", "{w}/nothing"], "is not an export folder"),
    "verify-no-manifest": (["verify", "{w}/not-an-export"], "has no manifest.json"),
    "verify-escape": (["verify", "{w}/export-escape"], "'../good.pt' leaves the export folder"),
    "verify-absolute": (["verify", "{w}/export-absolute"], "'/etc/passwd' leaves the export folder"),
    "verify-nan": (["verify", "{w}/export-nan"], "NaN is not a finite number"),
    "verify-format": (["verify", "{w}/export-format"], "format 99 is not one of (1, 2)"),
    "verify-huge-classes": (["verify", "{w}/export-huge-classes"], "model.num_classes 1000000000000 is outside"),
    "verify-artifact-info-empty": (["verify", "{w}/export-artifact-info-empty"], "export_seconds None is not seconds"),
    "verify-evaluation-garbage": (["verify", "{w}/export-evaluation-garbage"], "evaluation.top1.'torch': 2.0 is not"),
    "verify-huge-file-bytes": (["verify", "{w}/export-huge-file-bytes"], "is outside [0, 1000000000000000000]"),
    "verify-duplicate-key": (["verify", "{w}/export-duplicate-key"], "the key 'device0.pt' appears twice"),
    "verify-no-digest": (["verify", "{w}/export-no-digest"], "records no SHA-256 for 'device1.pt'"),
    "verify-tampered": (["verify", "{w}/export-tampered"], "device0.pt: SHA-256"),
    "verify-invalid-json": (["verify", "{w}/export-invalid-json"], "not valid JSON"),
    "verify-a-file": (["verify", "{w}/a-file"], "is not an export folder"),
    # plan: latency tables
    "plan-latency-missing": (["plan", "--budget-ms", "5", "--latency-table", "{w}/nothing.json"], "does not exist"),
    "plan-latency-empty-folder": (["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-empty"], "holds no .json"),
    "plan-latency-bad-format": (["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-bad"], "is not a paradis-"),
    "plan-latency-p50-above-p95": (
        ["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-p50-above-p95"],
        "p50_s 0.003 is above p95_s 0.002",
    ),
    "plan-latency-batches": (["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-batch"], "different batch"),
    "plan-latency-duplicate": (["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-dup"], "two latency tables"),
    "plan-latency-two-models": (
        ["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-two-models"],
        "latency tables measured on different models",
    ),
    "plan-latency-of-another-model": (
        ["plan", "--budget-ms", "5", *ck("good.pt"), "--latency-table", "{w}/lat-other-model"],
        "the latency table of device 'a' was measured on ('resnet18', 1000, 3, None), not on the trained model",
    ),
    "plan-latency-not-json": (["plan", "--budget-ms", "5", "--latency-table", "{w}/table-not-json.json"], "JSON"),
    "plan-latency-with-measure": (
        [*PLAN, "--latency-table", "{w}/lat-good", *ck("good.pt"), "--measure-batch", "4"],
        "drop --measure-batch",
    ),
    "plan-latency-unknown-device": (
        ["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-good", "--device", "c::1GB"],
        "--device 'c' has no latency table",
    ),
    "plan-latency-device-speed": (
        ["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-good", "--device", "a:2"],
        "its latency table measures its speed",
    ),
    "plan-latency-no-onnx": (
        ["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-good", "--runtime", "onnxruntime"],
        "has no onnxruntime timings",
    ),
    "plan-latency-stat": (
        ["plan", "--budget-ms", "5", "--latency-table", "{w}/lat-good", "--latency-stat", "p99"],
        "p99",
    ),
    # profile-devices: all refused before Ray starts
    **{
        f"profile-{name}": (["profile-devices", *ck("good.pt"), "--output", "{w}/prof-new", *extra], needle)
        for name, (extra, needle) in {
            "no-device": ([], "name at least one --device"),
            "duplicate-device": (["--device", "a", "--device", "a"], "device names must be distinct"),
            "reserved-name": (["--device", "CPU"], "cannot be a Ray custom resource"),
            "slash-name": (["--device", "a/b"], "cannot be a Ray custom resource"),
            "empty-name": (["--device", ""], "device name '' must be 1 to 200 characters"),
            "batch-huge": (["--device", "a", "--batch", "1000000"], "outside [1, 65536]"),
            "repeats-one": (["--device", "a", "--repeats", "1"], "--repeats: '1' is outside [2, 100000]"),
            "switch-no-stats": (["--device", "a", "--switches", "[4x0.25]"], "switch [4x0.25] has no BN statistics"),
            "switch-garbage": (["--device", "a", "--switches", "[x]"], "'x' is not a number"),
            "timeout-zero": (["--device", "a", "--call-timeout-s", "0"], "is outside (0, 86400]"),
            "export-tampered": (["--device", "a", "--export", "{w}/export-tampered"], "device0.pt: SHA-256"),
            "export-escape": (["--device", "a", "--export", "{w}/export-escape"], "leaves the export folder"),
            "checkpoint-truncated": (["--device", "a", *ck("truncated.pt")], "truncated.pt' cannot be read"),
        }.items()
    },
    "profile-output-file": (
        ["profile-devices", *ck("good.pt"), "--device", "a", "--output", "{w}/a-file"],
        "is a file",
    ),
    "profile-tables-exist": (
        ["profile-devices", *ck("good.pt"), "--device", "a", "--output", "{w}/prof-out"],
        "already holds ['a.json']; give --force",
    ),
    # register, and --model-uri: refused before any tracking store is touched
    **{
        f"register-{name}": (["register", *extra], needle)
        for name, (extra, needle) in {
            "no-name": ([*ck("good.pt"), "--switch", "[1.0]"], "the following arguments are required: --name"),
            "bad-name": ([*ck("good.pt"), "--switch", "[1.0]", "--name", "a/b"], "'a/b' is not a model name"),
            "alias-latest": ([*ck("good.pt"), "--switch", "[1.0]", "--name", "m", "--alias", "latest"], "not an alias"),
            "alias-version": ([*ck("good.pt"), "--switch", "[1.0]", "--name", "m", "--alias", "v2"], "not an alias"),
            "alias-space": ([*ck("good.pt"), "--switch", "[1.0]", "--name", "m", "--alias", "a b"], "not an alias"),
            "bad-run-id": (["--run-id", "x;y", "--switch", "[1.0]", "--name", "m"], "is not an MLflow run id"),
            "switch-garbage": ([*ck("good.pt"), "--switch", "[1,,0]", "--name", "m"], "switch '[1,,0]'"),
            "switch-no-stats": ([*ck("good.pt"), "--switch", "[4x0.25]", "--name", "m"], "has no BN statistics"),
            "model-uri": (["--model-uri", "models:/m/1", "--switch", "[1.0]", "--name", "m"], "--run-id is required"),
            "relative-store": (
                [*ck("good.pt"), "--switch", "[1.0]", "--name", "m", "--tracking-uri", "sqlite:///x.db"],
                "relative path",
            ),
            "checkpoint-truncated": ([*ck("truncated.pt"), "--switch", "[1.0]", "--name", "m"], "cannot be read"),
        }.items()
    },
    "export-model-uri-malformed": (["export", "--model-uri", "models:/m", "--output", "{w}/o"], "is not models:/"),
    "export-model-uri-runs": (["export", "--model-uri", "runs:/abc/x", "--output", "{w}/o"], "is not models:/"),
    "export-model-uri-format": (
        ["export", "--model-uri", "models:/m/1", "--output", "{w}/o", "--format", "onnx"],
        "--format / --quantize need --checkpoint or --run-id",
    ),
    "export-model-uri-and-checkpoint": (
        ["export", "--model-uri", "models:/m/1", *ck("good.pt"), "--output", "{w}/o"],
        "not allowed with argument",
    ),
    "plan-model-uri-malformed": (["plan", "--budget-ms", "5", "--model-uri", "models:/m/0"], "is not models:/"),
    "serve-model-uri-malformed": (["serve-bench", "--model-uri", "models:/@prod"], "is not models:/"),
    # the command itself
    "no-command": ([], "the following arguments are required: command"),
    "unknown-command": (["deploy-everything"], "invalid choice: 'deploy-everything'"),
}


def run(argv: list[str]) -> tuple[int, str, str, float]:
    """``main(argv)`` in this process: exit code, stdout, stderr, seconds."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - t0


COMMANDS = ("export", "plan", "serve-bench", "verify", "profile-devices", "register")


def command_of(argv: list[str]) -> str:
    return argv[0] if argv and argv[0] in COMMANDS else ""


def test_the_corpus_is_large_enough():
    per_command: dict[str, int] = {}
    for argv, _ in CORPUS.values():
        per_command[command_of(argv)] = per_command.get(command_of(argv), 0) + 1
    assert len(CORPUS) >= 40 and all(per_command[c] >= 10 for c in COMMANDS)


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_input_is_refused_with_one_line(case, world):
    template, needle = CORPUS[case]
    argv = [a.replace("{w}", str(world)) for a in template]
    before = sorted(str(p.relative_to(world)) for p in world.rglob("*"))
    code, out, err, seconds = run(argv)
    cmd = command_of(argv)
    TIMES[case] = (cmd or "deploy", seconds)
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1, err
    assert lines[0].startswith(f"deploy {cmd}: error: " if cmd else "deploy: error: "), lines[0]
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err + out and len(lines[0]) < 1600
    assert sorted(str(p.relative_to(world)) for p in world.rglob("*")) == before  # nothing written or removed
    assert not (world / "MARKER").exists()  # the planted pickle never ran
    assert seconds < 5.0, f"{seconds:.2f} s"
    if cmd in ("serve-bench", "profile-devices"):
        assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_refusal_figures():
    """How many inputs each command was given, and the slowest refusal (printed with -s)."""
    if len(TIMES) < len(CORPUS):
        pytest.skip("run with the whole corpus")
    per: dict[str, list[float]] = {}
    for cmd, seconds in TIMES.values():
        per.setdefault(cmd, []).append(seconds)
    slowest = max(TIMES, key=lambda c: TIMES[c][1])
    print(
        "\ndeploy bad inputs: "
        + ", ".join(f"{c} {len(v)} (slowest {max(v):.3f} s)" for c, v in sorted(per.items()))
        + f"; slowest of all: {slowest} {TIMES[slowest][1]:.3f} s"
    )
    assert TIMES[slowest][1] < 5.0


@pytest.mark.parametrize(
    ("entry", "argv", "prefix"),
    [
        ([sys.executable, "-m", "orchestration.deploy"], ["plan", "--budget-ms", "nan"], "deploy plan: error: "),
        ([sys.executable, "-m", "orchestration.deploy"], ["verify", "{w}/export-escape"], "deploy verify: error: "),
        ([str(Path(sys.executable).parent / "paradis-deploy")], ["export", "--switch", "x"], "deploy export: error: "),
    ],
)
def test_the_installed_entry_points_print_the_same_one_line(entry, argv, prefix, world):
    if not Path(entry[0]).exists():
        pytest.skip("paradis-deploy is not installed")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [a.replace("{w}", str(world)) for a in argv]
    proc = subprocess.run([*entry, *argv], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(prefix), proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_planted_pickle_is_live(tmp_path):
    """The corpus's planted checkpoint would run its payload under a plain unpickling; deploy refuses it."""
    torch.save({"x": Plant(tmp_path / "ran")}, tmp_path / "planted.pt")
    torch.load(tmp_path / "planted.pt", weights_only=False)
    assert (tmp_path / "ran").exists()


# --- fuzz: generated bad values, in process -----------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
FUZZ = hypothesis.settings(max_examples=50, deadline=None, derandomize=True, database=None)

NOT_A_SWITCH = st.text(max_size=40).filter(lambda t: not _parses(t))
BAD_ACCURACY = st.one_of(
    st.floats(max_value=-1e-9),
    st.floats(min_value=1.000001),
    st.text(max_size=10),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
BAD_COUNTS = st.one_of(
    st.lists(st.integers(max_value=-1), min_size=2, max_size=2),
    st.lists(st.text(max_size=5), min_size=2, max_size=2),
    st.lists(
        st.floats(allow_nan=True).filter(lambda v: v != int(v) if v == v and abs(v) != float("inf") else True),
        min_size=2,
        max_size=2,
    ),
    st.integers(),
    st.text(max_size=10),
    st.none(),
    st.lists(st.integers(min_value=0), min_size=3, max_size=5),
)
BAD_ROW = st.one_of(
    st.builds(lambda v: {**ROW, "switch": v}, NOT_A_SWITCH),
    st.builds(lambda v: {**ROW, "accuracy": v}, BAD_ACCURACY),
    st.builds(lambda v: {**ROW, "device_macs": v}, BAD_COUNTS),
    st.builds(lambda v: {**ROW, "device_params": v}, BAD_COUNTS),
    st.builds(lambda v: {**ROW, "device_seconds": v}, BAD_COUNTS.filter(lambda v: v is not None)),
    st.one_of(st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3), st.none()),
)
BAD_NUMBER = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "", " ", "1e999", "0x10", "five", "--", "1,5"]),
    st.floats(max_value=0.0).map(repr),
    st.text(alphabet="abcdefxyz%$!", min_size=1, max_size=8),
)


def _parses(text: str) -> bool:
    from paradis.switch import parse_switch

    try:
        parse_switch(text)
        return True
    except ValueError:
        return False


def _one_error_line(code: int, err: str, cmd: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-1000:])
    assert len(lines) == 1 and lines[0].startswith(f"deploy {cmd}: error: "), err[-1000:]
    assert "Traceback" not in err and len(lines[0]) < 1600


@FUZZ
@hypothesis.given(rows=st.lists(BAD_ROW, min_size=1, max_size=4), good_first=st.booleans())
def test_fuzz_plan_tables_with_a_bad_row_are_refused(rows, good_first, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz-table") / "table.json"
    path.write_text(json.dumps(([ROW] if good_first else []) + rows, allow_nan=True))
    code, out, err, seconds = run(["plan", "--budget-ms", "50", "--macs-per-second", "1e9", "--table", str(path)])
    _one_error_line(code, err, "plan")
    assert out == "" and seconds < 2.0


@FUZZ
@hypothesis.given(
    budget=st.one_of(BAD_NUMBER, st.just("5")),
    overhead=st.one_of(BAD_NUMBER.filter(lambda t: t not in ("0.0", "-0.0")), st.just("0")),
    devices=st.one_of(st.integers(max_value=0), st.integers(min_value=257), st.just(2)).map(str),
)
def test_fuzz_plan_numbers(budget, overhead, devices, world):
    argv = ["plan", "--table", str(world / "table-good.json"), "--macs-per-second", "1e9"]
    argv += ["--budget-ms", budget, "--overhead-ms", overhead, "--devices", devices]
    hypothesis.assume((budget, overhead, devices) != ("5", "0", "2"))
    code, _, err, _ = run(argv)
    _one_error_line(code, err, "plan")


@FUZZ
@hypothesis.given(
    option=st.sampled_from(["--test-images", "--calibration-batches", "--calibration-batch-size", "--threads"]),
    value=st.one_of(BAD_NUMBER, st.integers(max_value=-1).map(str), st.integers(min_value=10**8).map(str)),
    switch=st.one_of(NOT_A_SWITCH, st.just("[0.5, 0.5]")),
    side=st.one_of(st.integers(max_value=0), st.integers(min_value=8193)).map(str),
)
def test_fuzz_export_arguments(option, value, switch, side, world):
    out = world / "fuzz-export-out"
    argv = ["export", "--checkpoint", str(world / "good.pt"), "--switch", switch, "--output", str(out)]
    argv += [option, value, "--input-size", "1", side, "28"]
    code, _, err, seconds = run(argv)
    _one_error_line(code, err, "export")
    assert not out.exists() and seconds < 2.0

"""``python -m paradis train`` with ``device: cuda``: fp32, bf16 with channels-last, super-resolution."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import torch
import yaml

from tests.cuda.common import CUDA, ROOT, record

pytestmark = CUDA

CLASSIFIER = {
    "model": {"name": "mobilenet_v1_small"},
    "data": {"name": "synthetic", "synthetic_train": 512, "synthetic_test": 128},
    "training": {"method": "paradis", "epochs": 2, "batch_size": 64, "optimizer": {"lr": 0.1}},
    "evaluation": {"calibration_batches": 2},
}
SUPER_RESOLUTION = {
    "task": "super-resolution",
    "model": {"name": "wdsr_small"},
    "data": {
        "name": "skimage-photos",
        "sr": {"scale": 2, "patch_size": 24, "max_patches_per_image": 8, "val_images": ["camera"]},
    },
    "training": {
        "method": "paradis",
        "distillation": "none",
        "wide_factor": 1.0,
        "switches": ["[1.0]", "[0.5, 0.5]"],
        "epochs": 1,
        "batch_size": 16,
        "max_steps_per_epoch": 4,
        "optimizer": {"name": "adam", "lr": 1.0e-3, "momentum": 0.9, "weight_decay": 0.0},
    },
    "evaluation": {"switches": ["[1.0]", "[0.5, 0.5]"]},
}


def train(tmp_path, name: str, config: dict, device, *sets: str) -> tuple[list[dict], dict, str]:
    """Run the command; return its history, the saved state dict (on the device it was trained on)
    and its output."""
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    out = tmp_path / name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env["PARADIS_HOME"] = str(tmp_path / "home")
    cmd = [sys.executable, "-m", "paradis", "train", "--config", str(cfg), "--output", str(out)]
    cmd += ["--set", f"device={device.type}", *(a for s in sets for a in ("--set", s))]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{log[-4000:]}"
    history = json.loads((out / "history.json").read_text())
    state = torch.load(out / "model.pt", weights_only=True)  # no map_location: tensors come back where saved
    assert (out / "table.md").exists() and len((out / "table.csv").read_text().splitlines()) > 1
    return history, state, log


def _on(state: dict, device) -> bool:
    return all(t.device.type == device.type for t in state.values())


def test_paradis_train_with_device_cuda_in_fp32_and_in_bf16_with_channels_last(tmp_path, device):
    fp32, state, _ = train(tmp_path, "fp32", CLASSIFIER, device)
    bf16, state16, _ = train(tmp_path, "bf16", CLASSIFIER, device, "precision=bf16", "channels_last=true")
    assert _on(state, device) and _on(state16, device)
    losses = {k: [h["loss"] for h in hist] for k, hist in (("fp32", fp32), ("bf16", bf16))}
    record(f"paradis train {device.type}: epoch losses {losses}; last epoch {fp32[-1]} | bf16 {bf16[-1]}")
    for curve in losses.values():
        assert len(curve) == 2 and all(math.isfinite(v) for v in curve)
    # the first epoch's mean loss: the two runs have hardly diverged yet
    assert abs(losses["bf16"][0] - losses["fp32"][0]) <= 0.05 * losses["fp32"][0], losses


def test_paradis_train_super_resolution_with_device_cuda(tmp_path, device):
    history, state, _ = train(tmp_path, "sr", SUPER_RESOLUTION, device)
    assert _on(state, device)
    last = history[-1]
    record(f"paradis train super-resolution {device.type}: {last}")
    assert math.isfinite(last["loss"])
    assert last.get("psnr/1.0", 0) > 20 and last.get("psnr/0.5-0.5", 0) > 20, last

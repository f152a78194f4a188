"""``--smoke``: any study scaled down to a couple of minutes on a CPU (small subsets, two short epochs,
few trials; folder data sets that are not here become synthetic images or the built-in photographs)."""

from __future__ import annotations

import copy
from pathlib import Path

from paradis.config import apply_overrides

SMOKE_OVERRIDES = {
    "data.train_subset": 1024,
    "data.test_subset": 512,
    "training.epochs": 2,
    "training.batch_size": 64,
    "training.max_steps_per_epoch": 8,
    "evaluation.calibration_batches": 2,
    "device": "cpu",
}


def apply_smoke(data: dict) -> dict:
    """Scale a study down to a couple of minutes on a CPU: small subsets, 2 short epochs, few trials.
    Folder data sets that are not here (ImageNet, CIFAR) become synthetic images; DIV2K becomes the
    built-in photographs."""
    data = copy.deepcopy(data)
    sections = ("data", "training", "search", "scheduler", "resources", "evaluation", "front", "distributable")
    if any(k in data and not isinstance(data[k], dict) for k in sections):
        return data  # a section of the wrong type: validation names it, unchanged
    d = data.setdefault("data", {})
    root = d.get("root")
    missing = not (isinstance(root, str) and root and Path(root).is_dir())
    if d.get("name") in ("imagenet", "cifar10", "cifar100") and missing:
        data["data"] = {"name": "synthetic"}
    if d.get("name") == "div2k" and missing:
        data["data"] = {"name": "skimage-photos"}  # the built-in super-resolution photographs
    apply_overrides(data, [f"{k}={v}" for k, v in SMOKE_OVERRIDES.items()], "--smoke")
    sched = data["training"].get("schedule")
    if isinstance(sched, dict) and sched.get("milestones"):
        sched["milestones"] = [1]
    search = data.setdefault("search", {})
    samples = search.get("samples", 1)
    if search.get("kind") == "optuna" and isinstance(samples, int) and not isinstance(samples, bool):
        search["samples"] = min(samples, 3)
    sch = data.get("scheduler") or {}
    if sch.get("kind") == "asha":
        sch["grace_period"] = 1
    if data["data"].get("name") == "imagenet":
        data["data"]["image_size"] = min(data["data"].get("image_size", 224), 64)
    data["data"].pop("num_workers", None)  # loader processes cost more than they give on a few batches
    res = data.setdefault("resources", {})
    if res.get("gpus_per_worker"):  # a GPU study tried on a CPU: one worker of one core
        res.update(workers_per_trial=1, cpus_per_worker=1)
    res["gpus_per_worker"] = 0  # a CPU study keeps what it asks for (and is refused where it cannot run)
    if isinstance(data.get("front"), dict):
        data["front"].update(validation=256, evaluations=4)
    if isinstance(data.get("distributable"), dict):
        data["distributable"]["trials"] = 3
    return data

"""Checkpoints: written atomically beside the previous one, read with ``weights_only=True``."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from paradis.config.changes import config_changes, describe_changes
from paradis.util import write_atomically

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupted or of another format)."""


def check_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` is a folder this process can write into, or one it can create: checked before the
    first training step, so that no result is lost at the end."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{what} {str(p)!r} is a file, not a folder")
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {str(p)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(p)!r}: {str(probe)!r} is not writable")
    return p


def set_aside(path: Path, log: Callable[[str], None]) -> Path:
    """Rename a damaged checkpoint out of the way (never overwritten by a fresh start) and say so."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, aside)
    log(f"warning: kept the damaged {path.name} as {aside.name}")
    return aside


def check_same_run(state: dict, current: dict, path: Path) -> None:
    """Refuse, in one line naming the differing keys, a checkpoint written by another configuration."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} records no run configuration; it cannot be resumed")
    changes = config_changes(saved, current)
    if changes:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written by another configuration ({describe_changes(changes)}); "
            "train afresh with --restart, or give another --checkpoint-dir"
        )


def previous_checkpoint(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically, keeping the previous checkpoint beside the new one: a crash mid-write, or a
    file damaged later, still leaves a good checkpoint to resume from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = torch_bytes({"format": CHECKPOINT_FORMAT, **state})
    staged = path.with_name(f".{path.name}.new")
    write_atomically(staged, data)  # a full disk leaves the last good checkpoint as it was
    if path.exists():
        os.replace(path, previous_checkpoint(path))
    os.replace(staged, path)


MODEL_KEYS = ("model", "epoch", "history", "config")  # what a trained model needs; no optimizer, RNG or planner


def write_model_file(checkpoint: Path, dest: Path) -> int:
    """A checkpoint's trained model alone (weights with every switch's BN statistics, its configuration,
    history and epoch: what deploy loads) written to ``dest``, about half the checkpoint without the
    optimizer's state; its size in bytes."""
    state = load_checkpoint(checkpoint)
    data = torch_bytes({k: state[k] for k in MODEL_KEYS if k in state})
    write_atomically(dest, data)
    return len(data)


def torch_bytes(obj) -> bytes:
    """What ``torch.save(obj)`` writes, in memory (its size is known before anything is written)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# what a resumable checkpoint holds, and the type of each part (a file that loads may still lack one)
PARTS = {
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "planner": dict,
    "torch_rng": torch.Tensor,
    "epoch": int,
    "history": list,
    "config": dict,
}


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a paradis checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def check_resumable(state: dict, path: Path) -> None:
    """A checkpoint that loaded holds every part a resume restores, each of the type training saves:
    one line naming the part otherwise, before anything is restored."""
    for key, kind in PARTS.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"checkpoint {str(path)!r}: {key} is {type(value).__name__}, not {kind.__name__}")
    if not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise CheckpointError(f"checkpoint {str(path)!r}: model is not a state dict of tensors")
    if state["torch_rng"].dtype != torch.uint8 or state["epoch"] < 0:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: torch_rng or epoch ({state['epoch']}) is not what training saves"
        )


def check_checkpoint_dir(path: str | os.PathLike) -> Path:
    """A folder a checkpoint can be written into (:func:`check_writable_dir`), where neither of the
    names a save moves files to is taken by a folder: found before the first step, not after an epoch."""
    p = check_writable_dir(path, "checkpoint folder")
    for name in (previous_checkpoint(p / "checkpoint.pt").name, ".checkpoint.pt.new"):
        if (p / name).is_dir():
            raise CheckpointError(f"checkpoint folder {str(p)!r}: {name} is a folder; no checkpoint can be saved there")
    return p


def load_resumable(path: Path, map_location, log: Callable[[str], None]) -> dict | None:
    """The newest readable checkpoint: ``path``, else the previous one, else ``None`` (start afresh).
    A damaged file is reported, never retried in a loop."""
    damaged = False
    for candidate in (path, previous_checkpoint(path)):
        if not candidate.exists():
            continue
        try:
            return load_checkpoint(candidate, map_location=map_location)
        except CheckpointError as err:
            log(f"warning: {err}; trying an older checkpoint")
            set_aside(candidate, log)
            damaged = True
    if damaged:
        log(f"warning: no readable checkpoint in {path.parent}; training starts from scratch")
    return None

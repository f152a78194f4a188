"""A full disk: nothing truncated is left under a final name, no temporary file takes the space, and
the refusal says where and how much (a real small tmpfs; needs root, skipped elsewhere)."""

import contextlib
import subprocess
import sys

import pytest
import torch

from paradis.engine.checkpoint import load_checkpoint, save_checkpoint
from paradis.util import NoSpaceLeft, write_atomically
from tests.orchestration.conftest import ROOT


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", str(mount)], check=True)


def test_a_write_that_does_not_fit_leaves_nothing_and_says_so(small_disk):
    with pytest.raises(NoSpaceLeft, match=rf"no space left on {small_disk} \(1000000 bytes needed\)"):
        write_atomically(small_disk / "big.bin", b"\0" * 1_000_000)
    assert list(small_disk.iterdir()) == []
    write_atomically(small_disk / "small.bin", b"ok")
    assert (small_disk / "small.bin").read_bytes() == b"ok"


def test_a_checkpoint_that_does_not_fit_keeps_the_last_good_one(small_disk):
    path = small_disk / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "weights": torch.zeros(1000)})
    with pytest.raises(NoSpaceLeft, match="no space left on"):
        save_checkpoint(path, {"epoch": 2, "weights": torch.zeros(100_000)})
    assert sorted(p.name for p in small_disk.iterdir()) == ["checkpoint.pt"]
    assert load_checkpoint(path)["epoch"] == 1


def test_paradis_train_output_on_a_full_disk_is_one_line_and_no_truncated_model(small_disk):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "paradis",
            "train",
            "--set",
            "data.name=synthetic",
            "--set",
            "training.epochs=1",
            "--set",
            "threads=1",
            "--output",
            str(small_disk),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("paradis train: error: no space left on") and "bytes needed)" in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    names = sorted(p.name for p in small_disk.iterdir())
    assert "model.pt" not in names and not [n for n in names if n.startswith(".")], names

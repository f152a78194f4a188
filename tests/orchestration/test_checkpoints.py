"""What a trial persists and what reaches the tracking store: Ray keeps the checkpoints alone (hard
links, no ``.prev`` copy), and a tracking call is retried only when the failure is transient."""

import os
import subprocess
import sys
import tempfile

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    REQUEST_LIMIT_EXCEEDED,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from orchestration.tracking import mlflow as tracking_mlflow
from orchestration.trainable import persisted, scratch_dir


def test_ray_persists_the_checkpoints_alone_as_links(tmp_path):
    work = tmp_path / "paradis-trial-x"
    (work / "seed1").mkdir(parents=True)
    for path in (work / "checkpoint.pt", work / "seed1" / "checkpoint.pt"):
        path.write_bytes(b"newest")
        path.with_name("checkpoint.prev.pt").write_bytes(b"previous")
    (work / "scratch.bin").write_bytes(b"x" * 1000)
    out = persisted(work)
    files = sorted(str(p.relative_to(out)) for p in (tmp_path / "paradis-trial-x-ray").rglob("*") if p.is_file())
    assert out == str(tmp_path / "paradis-trial-x-ray") and files == ["checkpoint.pt", "seed1/checkpoint.pt"]
    assert os.path.samefile(work / "checkpoint.pt", tmp_path / "paradis-trial-x-ray" / "checkpoint.pt")
    # the trainer replaces checkpoint.pt by a new file: what was persisted stays the epoch it was
    (work / "checkpoint.pt").unlink()
    (work / "checkpoint.pt").write_bytes(b"next epoch")
    assert (tmp_path / "paradis-trial-x-ray" / "checkpoint.pt").read_bytes() == b"newest"
    persisted(work)  # the next report starts from an empty folder
    assert (tmp_path / "paradis-trial-x-ray" / "checkpoint.pt").read_bytes() == b"next epoch"


def test_a_new_scratch_folder_removes_those_of_ended_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    root = tmp_path / f"paradis-scratch-{os.getuid()}"
    killed = [root / f"trial-{dead}-abc", root / f"trial-{dead}-abc-ray", root / f"rank1-{dead}-xyz"]
    running = [root / f"trial-{os.getpid()}-old", root / f"trial-{os.getppid()}-def-ray"]
    foreign = [root / "notes", root / "a-b-c"]
    for d in killed + running + foreign:
        (d / "seed0").mkdir(parents=True)
        (d / "seed0" / "checkpoint.pt").write_bytes(b"x" * 100)
    new = scratch_dir("trial")
    assert new.parent == root and new.name.startswith(f"trial-{os.getpid()}-") and new.is_dir()
    assert not any(d.exists() for d in killed)  # a trial Tune killed: its finally never ran
    assert all(d.exists() for d in running + foreign)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    assert oct(scratch_dir("trial").parent.stat().st_mode & 0o777) == "0o700"  # private to its user


@pytest.mark.parametrize(
    ("err", "retried"),
    [
        (ConnectionError("reset by peer"), True),
        (TimeoutError("timed out"), True),
        (MlflowException("API request failed: Max retries exceeded"), True),  # INTERNAL_ERROR
        (MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE), True),
        (MlflowException("slow down", error_code=REQUEST_LIMIT_EXCEEDED), True),
        (MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST), False),
        (MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE), False),
        (MlflowException("who are you", error_code=PERMISSION_DENIED), False),
        (ValueError("a bug"), False),
        (FileNotFoundError("no such artifact"), False),
    ],
)
def test_only_transient_errors_are_retried(monkeypatch, err, retried):
    calls = []
    monkeypatch.setattr(tracking_mlflow.time, "sleep", lambda s: calls.append(("sleep", s)))

    def call():
        calls.append("call")
        raise err

    with pytest.raises(type(err)):
        tracking_mlflow._retry(call, attempts=4, delay=1.0)
    sleeps = [s for c, s in (c for c in calls if c != "call")]
    assert calls.count("call") == (4 if retried else 1)
    # exponential backoff with jitter: attempt i waits 2**i seconds times a factor in [0.5, 1.5]
    assert all(0.5 * 2**i <= s <= 1.5 * 2**i for i, s in enumerate(sleeps)) and len(sleeps) == (3 if retried else 0)

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def study_env(tmp_path):
    """An environment in which a study keeps everything under ``tmp_path``, with its own local Ray."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(PARADIS_HOME=str(tmp_path / "home"), PARADIS_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    # a cluster file left by another test would make ray.init() join that cluster; a short path keeps
    # Ray's socket names within their length limit
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    yield env
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def stop_ray_under(temp_dir) -> None:
    """Kill the Ray processes a test started: those run with its ``RAY_TMPDIR`` (Ray's workers rename
    themselves, their environment stays). ``ray stop --force`` would kill every Ray on the machine, a
    user's study too."""
    marker = f"RAY_TMPDIR={temp_dir}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc.name), signal.SIGKILL)


def run_study(args, env, timeout=900):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "orchestration" / "run_study.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    return proc


def mlflow_runs(db: Path, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {db}"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("paradis.role") == "study"]
    children = [r for r in runs if r.data.tags.get("paradis.role") == "trial"]
    return client, parents, children


def artifact_paths(client, run_id, path=None):
    out = []
    for a in client.list_artifacts(run_id, path):
        out += artifact_paths(client, run_id, a.path) if a.is_dir else [a.path]
    return out

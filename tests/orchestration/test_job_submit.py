"""``ray start --head`` with token authentication, then ``ray job submit --working-dir .`` (slow)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orchestration.conftest import ROOT, mlflow_runs, stop_ray_under

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_job_submit_with_token_auth_lands_runs_in_the_users_store(study_env, tmp_path):
    env = dict(study_env)
    env["HOME"] = str(tmp_path / "user")
    Path(env["HOME"]).mkdir()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    assert (Path(env["HOME"]) / ".ray" / "auth_token").is_file()
    gcs, dashboard = _free_port(), _free_port()
    head = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--port={gcs}",
            f"--dashboard-port={dashboard}",
            "--dashboard-host=127.0.0.1",
            "--include-dashboard=true",
            "--num-cpus=2",
            "--disable-usage-stats",
        ],
        env={**env, "RAY_AUTH_MODE": "token"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
        address = f"http://127.0.0.1:{dashboard}"
        submit = [
            RAY,
            "job",
            "submit",
            "--address",
            address,
            "--working-dir",
            str(ROOT),
            "--",
            "python",
            "orchestration/run_study.py",
            "studies/quickstart.yaml",
            "--smoke",
            "--set",
            "search.variants=null",
            "--set",
            "search.variants={wide-ipkd: {training.beta: 0.0}, ipkd: {training.distillation: ipkd}}",
        ]
        # without the token the job API refuses the submission
        refused = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=300)
        assert refused.returncode != 0
        assert any(w in (refused.stdout + refused.stderr) for w in ("401", "403", "nauthorized", "uthentication"))

        job = subprocess.run(
            submit, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=900, cwd=tmp_path
        )
        out = job.stdout + job.stderr
        assert job.returncode == 0, out[-4000:]
        assert "2 of 2 trials finished" in out
        _client, parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-quickstart")
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
        # the runs are in the user's store, not in the job's copy of the working directory
        assert not list(Path(env["RAY_TMPDIR"]).rglob("mlflow.db"))
    finally:
        stop_ray_under(env["RAY_TMPDIR"])

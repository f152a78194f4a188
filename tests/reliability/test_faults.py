"""Fault injection on 2 cores: a trial process, a Ray Train worker, the driver and the tracking server
fail, and the study still ends with every trial, resumed from checkpoints, with no duplicate runs (slow)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.orchestration.conftest import ROOT, mlflow_runs, run_study, stop_ray_under

pytestmark = pytest.mark.slow
ONE_VARIANT = "search.variants={only: {training.beta: 0.0}}"


def _steps(client, run, key="acc/1.0"):
    return [m.step for m in client.get_metric_history(run.info.run_id, key)]


def _fault(tmp_path, **kw):
    return json.dumps({"marker": str(tmp_path / "fault-happened"), **kw})


def test_trial_process_killed_mid_training_resumes_from_its_checkpoint(study_env, tmp_path):
    env = {**study_env, "PARADIS_FAULT_INJECTION": _fault(tmp_path, exit_at_epoch=2)}
    start = time.perf_counter()
    proc = run_study(
        [
            "studies/quickstart.yaml",
            "--smoke",
            "--set",
            "search.variants=null",
            "--set",
            ONE_VARIANT,
            "--set",
            "training.epochs=3",
            "--set",
            "failure.max_failures=1",
        ],
        env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "fault-happened").exists()
    client, _parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-quickstart")
    assert len(children) == 1 and children[0].info.status == "FINISHED"
    assert children[0].data.tags["paradis.restarts"] == "1"
    # resumed after epoch 2, not from scratch: every epoch was trained (and logged) exactly once
    assert _steps(client, children[0]) == [1, 2, 3]
    print(f"trial kill: {time.perf_counter() - start:.0f} s")


def test_max_failures_is_honoured(study_env, tmp_path):
    # with max_failures=0 the first fault is final: the trial fails and the study says so
    env = {**study_env, "PARADIS_FAULT_INJECTION": _fault(tmp_path, exit_at_epoch=1)}
    proc = run_study(
        [
            "studies/quickstart.yaml",
            "--smoke",
            "--set",
            "search.variants=null",
            "--set",
            ONE_VARIANT,
            "--set",
            "failure.max_failures=0",
        ],
        env,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "0 of 1 trials finished" in proc.stdout
    _, _, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-quickstart")
    assert len(children) == 1 and children[0].info.status == "FAILED"


def test_ray_train_worker_killed_resumes_from_checkpoint(study_env, tmp_path):
    env = {**study_env, "PARADIS_FAULT_INJECTION": _fault(tmp_path, exit_at_epoch=1, rank=1)}
    proc = run_study(
        [
            "studies/quickstart.yaml",
            "--smoke",
            "--set",
            "search.variants=null",
            "--set",
            ONE_VARIANT,
            "--set",
            "training.epochs=2",
            "--set",
            "resources.workers_per_trial=2",
            "--set",
            "resources.cpus_per_worker=0.5",
            "--set",
            "failure.max_failures=1",
        ],
        env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "fault-happened").read_text().startswith("killed at epoch 1, rank 1")
    client, _, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-quickstart")
    assert len(children) == 1 and children[0].info.status == "FINISHED"
    assert sorted(set(_steps(client, children[0]))) == [1, 2]


def test_non_finite_loss_fails_that_trial_with_its_reason_and_the_study_goes_on(study_env, tmp_path):
    variants = "search.variants={ok: {training.beta: 0.0}, diverges: {training.optimizer.lr: 100.0}}"
    proc = run_study(
        ["studies/quickstart.yaml", "--smoke", "--set", "search.variants=null", "--set", variants], study_env
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 of 2 trials finished" in proc.stdout
    _, _, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-quickstart")
    status = {c.data.params["search.variant"]: c for c in children}
    assert status["ok"].info.status == "FINISHED"
    assert status["diverges"].info.status == "FAILED"
    assert "non-finite" in status["diverges"].data.tags["paradis.error"]
    assert status["diverges"].data.tags["paradis.restarts"] == "0"  # not retried


def _reported(home: Path, trials: int) -> bool:
    """Whether ``trials`` trials have reported an epoch, read from Ray's result files (polling the
    MLflow store instead could race with the driver creating it)."""
    results = list(home.glob("ray_results/*/*/result.json"))
    return len([r for r in results if r.stat().st_size > 0]) >= trials


def _kill_driver_after_first_epoch(args, env, db, experiment, timeout=300):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "orchestration" / "run_study.py"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            time.sleep(1)
            if _reported(db.parent, 1):
                break
        else:
            raise AssertionError("the study never reported an epoch")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()


def test_killed_driver_resumes_without_rerunning_finished_trials_or_duplicating_runs(study_env, tmp_path):
    db = tmp_path / "home" / "mlflow.db"
    args = ["studies/quickstart.yaml", "--smoke", "--set", "training.epochs=3"]
    _kill_driver_after_first_epoch(args, study_env, db, "paradis-quickstart")
    client, parents, children = mlflow_runs(db, "paradis-quickstart")
    assert len(parents) == 1 and parents[0].info.status == "RUNNING"  # killed: nobody closed it
    # a resume under an edited spec would train the rest otherwise than the runs record: refused
    edits = ["--set", "training.optimizer.lr=0.05", "--set", "training.beta=0.5"]
    edited = run_study([*args, *edits, "--resume"], study_env)
    assert edited.returncode == 2, edited.stdout[-3000:] + edited.stderr[-3000:]
    (line,) = edited.stderr.strip().splitlines()
    assert line.startswith("run_study: error: the spec differs from the one study run"), edited.stderr[-3000:]
    assert "training.optimizer.lr: 0.2 -> 0.05" in line and "training.beta: 0.0 -> 0.5" in line, line
    # what changes only the reporting may differ
    proc = run_study([*args, "--set", "description=resumed", "--resume"], study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, parents, children = mlflow_runs(db, "paradis-quickstart")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    lost = [c for c in children if c.info.status != "FINISHED"]
    assert all(c.info.status == "KILLED" and "lost" in c.data.tags["paradis.error"] for c in lost)
    children = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(c.data.params["search.variant"] for c in children) == ["ipkd", "wide-ipkd", "wide-ipkd-a"]
    for c in children:
        assert sorted(set(_steps(client, c))) == [1, 2, 3]


def _stop_driver_after_first_report(args: list[str], env: dict, db, sig) -> tuple[int, str]:
    """Start a study's driver, send it ``sig`` once a trial has reported an epoch to the store at ``db``
    (the driver alone, as a scheduler's stop or Ctrl+C on its own process); its exit status and output.
    The child gets SIGINT's default: a background shell starts it ignored."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "orchestration" / "run_study.py"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not _reported(db.parent, 1):
            time.sleep(1)
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_driver_ends_the_study_as_interrupted_and_resumes(study_env, tmp_path, sig):
    """Ctrl+C or ``kill``: the study run ends KILLED (never FINISHED with a trial still training), the
    exit status is 130 with a line saying how to resume, and the resume finishes the study."""
    db = tmp_path / "home" / "mlflow.db"
    args = ["studies/quickstart.yaml", "--smoke", "--set", "training.epochs=4"]
    returncode, out = _stop_driver_after_first_report(args, study_env, db, sig)
    assert returncode == 130, out[-4000:]
    assert "study interrupted:" in out and "--resume" in out, out[-4000:]
    assert "Fatal Python error" not in out and "Traceback" not in out, out[-4000:]
    _, parents, children = mlflow_runs(db, "paradis-quickstart")
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    assert "resume with:" in parents[0].data.tags["paradis.error"]
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert [c for c in children if c.info.status == "KILLED"]  # a trial was still training
    resumed = run_study([*args, "--resume"], study_env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    client, parents, children = mlflow_runs(db, "paradis-quickstart")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(c.data.params["search.variant"] for c in finished) == ["ipkd", "wide-ipkd", "wide-ipkd-a"]
    for c in finished:
        assert sorted(set(_steps(client, c))) == [1, 2, 3, 4]


def test_a_resumed_study_spends_what_is_left_of_its_time_budget(study_env, tmp_path):
    """Ctrl+C part way through a study with a time budget, then --resume: Tune's budget goes on from
    where it stopped, and the resumed study ends as stopped by the budget (not as interrupted)."""
    db = tmp_path / "home" / "mlflow.db"
    budget = 90
    args = ["studies/quickstart.yaml", "--smoke", "--set", f"search.time_budget={budget}s"]
    args += ["--set", "training.epochs=400"]
    returncode, out = _stop_driver_after_first_report(args, study_env, db, signal.SIGINT)
    assert returncode == 130 and "--resume" in out, out[-4000:]
    resumed = run_study([*args, "--resume"], study_env)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-3000:]
    assert f"time budget of {budget} s reached" in resumed.stdout and "study interrupted" not in out, out[-3000:]
    _, parents, children = mlflow_runs(db, "paradis-quickstart")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["paradis.ended"].startswith(f"time budget of {budget} s reached")
    assert not [c for c in children if c.info.status == "RUNNING"]


@pytest.mark.parametrize("study", ["search", "search_multiobjective"])  # TPE; NSGA-II
def test_killed_optuna_study_resumes_its_searcher_without_duplicate_suggestions(study_env, tmp_path, study):
    db = tmp_path / "home" / "mlflow.db"
    args = [f"studies/{study}.yaml", "--smoke", "--set", "scheduler.kind=none"]
    _kill_driver_after_first_epoch(args, study_env, db, "paradis-search")
    proc = run_study([*args, "--resume"], study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _client, parents, children = mlflow_runs(db, "paradis-search")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished = [c for c in children if c.info.status == "FINISHED"]
    lost = [c for c in children if c.info.status != "FINISHED"]
    assert len(finished) == 3
    # a trial started just before the kill but not yet in Tune's state is not resumed: its run is closed
    assert all(c.info.status == "KILLED" and "lost" in c.data.tags["paradis.error"] for c in lost)
    children = finished
    suggestions = {
        (c.data.params["search.training.beta"], c.data.params["search.training.wide_factor"]) for c in children
    }
    assert len(suggestions) == 3
    import optuna  # the search's Optuna study holds each trial once, across the resume

    tags = parents[0].data.tags
    study = optuna.load_study(study_name=tags["paradis.optuna_study"], storage=tags["paradis.optuna_storage"])
    assert len(study.trials) == 3 and len({t.user_attrs["tune_trial_id"] for t in study.trials}) == 3


def test_unreachable_tracking_server_is_a_clear_error_before_training(study_env, tmp_path):
    start = time.perf_counter()
    proc = run_study(["studies/quickstart.yaml", "--smoke", "--set", "tracking.uri=http://127.0.0.1:9"], study_env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("run_study: error: studies/quickstart.yaml: MLflow")
    assert "not reachable" in proc.stderr
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "home" / "ray_results").exists()  # nothing started


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_mlflow(db: Path, artifacts: Path, port: int, log: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{db}",
                "--artifacts-destination",
                str(artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.time() + 90
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.5)
    raise AssertionError(log.read_text()[-2000:])


def test_tracking_outage_during_training_loses_no_metric(study_env, tmp_path):
    port = _free_port()
    db, artifacts, log = tmp_path / "server.db", tmp_path / "artifacts", tmp_path / "mlflow.log"
    server = _start_mlflow(db, artifacts, port, log)
    uri = f"http://127.0.0.1:{port}"
    study = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "orchestration" / "run_study.py"),
            "studies/quickstart.yaml",
            "--smoke",
            "--set",
            "search.variants=null",
            "--set",
            ONE_VARIANT,
            "--set",
            "training.epochs=4",
            "--set",
            f"tracking.uri={uri}",
        ],
        env=study_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        deadline = time.time() + 300
        while time.time() < deadline:  # wait for the first epoch's metrics, then take the server down
            exp = client.get_experiment_by_name("paradis-quickstart")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if any("loss" in r.data.metrics for r in runs):
                break
            time.sleep(1)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        time.sleep(6)
        server = _start_mlflow(db, artifacts, port, log)
        out, _ = study.communicate(timeout=600)
        assert study.returncode == 0, out[-3000:]
        exp = client.get_experiment_by_name("paradis-quickstart")
        runs = client.search_runs([exp.experiment_id])
        children = [r for r in runs if r.data.tags.get("paradis.role") == "trial"]
        assert len(children) == 1 and children[0].info.status == "FINISHED"
        assert sorted(set(_steps(client, children[0]))) == [1, 2, 3, 4]
    finally:
        study.kill()
        os.killpg(server.pid, signal.SIGKILL)


def test_worker_node_killed_its_trials_finish_elsewhere(study_env, tmp_path):
    ray = str(Path(sys.executable).parent / "ray")
    env = {**study_env, "HOME": str(tmp_path / "user"), "RAY_AUTH_MODE": "disabled"}
    Path(env["HOME"]).mkdir()
    port = _free_port()
    nodes = []

    def start(args, name):
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - kept open for the node's lifetime
        nodes.append(
            subprocess.Popen(
                [ray, "start", "--block", "--disable-usage-stats", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    start(
        [
            f"--port={port}",
            "--head",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={Path(env['RAY_TMPDIR']) / 'h'}",
        ],
        "head",
    )
    try:
        deadline = time.time() + 120
        while (
            subprocess.run([ray, "status", f"--address=127.0.0.1:{port}"], env=env, capture_output=True).returncode != 0
        ):
            assert time.time() < deadline, (tmp_path / "head.log").read_text()[-2000:]
            time.sleep(1)
        start([f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--temp-dir={Path(env['RAY_TMPDIR']) / 'n2'}"], "node2")
        while (
            subprocess.run(
                [ray, "status", f"--address=127.0.0.1:{port}"], env=env, capture_output=True, text=True
            ).stdout.count("node_")
            < 2
        ):
            assert time.time() < deadline, (tmp_path / "node2.log").read_text()[-2000:]
            time.sleep(1)
        db = tmp_path / "home" / "mlflow.db"
        study = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "orchestration" / "run_study.py"),
                "studies/quickstart.yaml",
                "--smoke",
                "--set",
                "search.variants=null",
                "--set",
                "search.variants={a: {training.beta: 0.0}, b: {training.beta: 0.1}}",
                "--set",
                "training.epochs=4",
                "--set",
                "failure.max_failures=2",
            ],
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.time() + 300
        while time.time() < deadline and not _reported(tmp_path / "home", 2):  # a trial on each node
            time.sleep(1)
        os.killpg(nodes[1].pid, signal.SIGKILL)  # the second node dies
        out, _ = study.communicate(timeout=900)
        assert study.returncode == 0, out[-4000:]
        client, parents, children = mlflow_runs(db, "paradis-quickstart")
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
        assert sorted(c.data.tags["paradis.restarts"] for c in children) == ["0", "1"]
        for c in children:
            assert sorted(set(_steps(client, c))) == [1, 2, 3, 4]
    finally:
        for node in nodes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
        stop_ray_under(env["RAY_TMPDIR"])


PARECO_TWO = [
    "--set",
    "search.variants=null",
    "--set",
    "search.variants={pareco: {training.method: pareco}, slimmable: {training.method: us}}",
    "--set",
    "distributable=null",
]


def test_pareco_trial_killed_mid_training_resumes_from_its_checkpoint(study_env, tmp_path):
    """The PareCO trial (its proposer's history in the checkpoint) is retried from the checkpoint and
    ends with its front."""
    env = {**study_env, "PARADIS_FAULT_INJECTION": _fault(tmp_path, exit_at_epoch=2)}
    args = [
        "studies/pareco.yaml",
        "--smoke",
        "--set",
        "search.variants=null",
        "--set",
        "search.variants={pareco: {training.method: pareco}}",
    ]
    args += ["--set", "distributable=null", "--set", "training.epochs=3", "--set", "failure.max_failures=1"]
    proc = run_study(args, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "fault-happened").exists()
    client, parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-pareco")
    assert len(children) == 1 and children[0].info.status == "FINISHED"
    assert children[0].data.tags["paradis.restarts"] == "1"
    assert _steps(client, children[0], "loss") == [1, 2, 3]  # resumed after epoch 2
    assert "hypervolume/pareco" in parents[0].data.metrics


def test_killed_pareco_driver_resumes_without_duplicate_runs(study_env, tmp_path):
    db = tmp_path / "home" / "mlflow.db"
    args = ["studies/pareco.yaml", "--smoke", *PARECO_TWO, "--set", "training.epochs=3"]
    _kill_driver_after_first_epoch(args, study_env, db, "paradis-pareco")
    proc = run_study([*args, "--resume"], study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, parents, children = mlflow_runs(db, "paradis-pareco")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.params["search.variant"] for c in children) == ["pareco", "slimmable"]
    assert all(c.info.status == "FINISHED" for c in children)
    for c in children:
        assert sorted(set(_steps(client, c, "loss"))) == [1, 2, 3]
    assert {"hypervolume/pareco", "hypervolume/slimmable"} <= set(parents[0].data.metrics)

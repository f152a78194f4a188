"""The compose topology for real, on one machine: a Ray head host, a Ray worker host and an MLflow host
with PostgreSQL, each in its own Linux network namespace with its own address (198.18.0.0/15, joined by a
bridge), started with the commands the compose services run (docker/entrypoint.sh,
docker/mlflow-entrypoint.sh). A smoke study submitted with ``ray job submit`` must run its trials on the
worker host and land its runs in the MLflow server, written by the Ray nodes' non-admin writer account
(the admin's secret is only on the MLflow host); no MLflow process holds a password on its command line,
and the Ray token is made 0600. Everything is torn down, also on failure (slow)."""

from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.orchestration.conftest import ROOT

pytestmark = pytest.mark.slow
DOCKER = ROOT / "docker"
VENV_BIN = Path(sys.executable).parent
INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    if not INITDB:
        return "needs Debian's postgresql package"
    probe = subprocess.run(["ip", "netns", "add", "paradis-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create network namespaces here: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "paradis-probe"], capture_output=True)
    return None


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, **kw)


class Hosts:
    """Network namespaces on a bridge: ``add(name, address)``, ``start(name, cmd)``, ``close()``."""

    def __init__(self, prefix: str, subnet: str):
        self.prefix, self.subnet = prefix, subnet
        self.bridge = f"{prefix}br"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{subnet}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def add(self, name: str, last_octet: int) -> str:
        ns, veth = f"{self.prefix}-{name}", f"{self.prefix}{name[:4]}"
        address = f"{self.subnet}.{last_octet}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
        sh("ip", "link", "set", f"{veth}p", "netns", ns)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", f"{veth}p")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", f"{veth}p", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", f"{self.subnet}.1")
        return address

    def start(self, name: str, cmd: list[str], env: dict, log: Path, user: str | None = None) -> subprocess.Popen:
        prefix = ["ip", "netns", "exec", f"{self.prefix}-{name}"] + (["runuser", "-u", user, "--"] if user else [])
        with open(log, "w") as out:
            proc = subprocess.Popen(prefix + cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.time() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for ns in self.namespaces:
            # whatever is left in a namespace (Ray daemons detach from our process groups)
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


LOAD_FACTOR = 3


def wait_for(what: str, check, timeout: float, logs: list[Path]) -> None:
    # a server's start-up is CPU-bound: on a loaded 2-core machine it takes several times as long
    timeout *= LOAD_FACTOR
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
    raise AssertionError(f"{what} not ready after {timeout:.0f} s\n{tails}")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


def _call(url: str, auth: tuple[str, str], body: dict | None = None, method: str = "POST") -> tuple[int, dict]:
    """One MLflow REST call with basic authentication (GET without a body): (HTTP status, JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else method)
    request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode(errors="replace")
    try:
        return status, json.loads(text or "{}")
    except ValueError:
        return status, {"text": text[:500]}


@dataclass
class Topology:
    """The three hosts as the tests find them: addresses, secrets, folders and the submitted study's output."""

    tag: str
    work: Path
    values: dict[str, str]
    head_ip: str
    worker_ip: str
    mlflow_ip: str
    ray_secret_dir: Path
    job: subprocess.CompletedProcess

    @property
    def api(self) -> str:
        return f"http://{self.mlflow_ip}:5000/api"

    @property
    def admin(self) -> tuple[str, str]:
        return ("admin", self.values["mlflow_password"])

    @property
    def writer(self) -> tuple[str, str]:
        return ("paradis-writer", self.values["mlflow_writer_password"])


@pytest.fixture(scope="module")
def topology():
    """Start PostgreSQL and MLflow on the MLflow host, Ray's head and worker on theirs, submit the smoke
    study once; every test reads that one topology, which is torn down at the end (also on failure)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = f"pd{os.getpid() % 10000}"
    subnet = f"198.18.{os.getpid() % 200 + 20}"
    work = Path(tempfile.mkdtemp(prefix="paradis-hosts-", dir="/tmp"))
    work.chmod(0o755)
    logs = {n: work / f"{n}.log" for n in ("postgres", "mlflow", "head", "worker")}
    hosts = Hosts(tag, subnet)
    try:
        head_ip, worker_ip, mlflow_ip = hosts.add("head", 10), hosts.add("worker", 11), hosts.add("mlflow", 12)

        # the secrets, as docker/make-secrets.sh writes them, mounted as compose mounts them: the MLflow host
        # gets PostgreSQL's, the admin's, the writer's and the Flask key; the Ray hosts the token and the writer's
        values = {
            n: secrets.token_hex(32)
            for n in (
                "ray_token",
                "postgres_password",
                "mlflow_password",
                "mlflow_writer_password",
                "mlflow_flask_secret",
            )
        }
        secret_dir, ray_secret_dir = work / "secrets", work / "ray-secrets"
        for folder, names in (
            (secret_dir, ("postgres_password", "mlflow_password", "mlflow_writer_password", "mlflow_flask_secret")),
            (ray_secret_dir, ("ray_token", "mlflow_writer_password")),
        ):
            folder.mkdir()
            for name in names:
                (folder / name).write_text(values[name] + "\n")
                (folder / name).chmod(0o600)
        (secret_dir / "postgres_password").chmod(0o644)  # read by the postgres user below (initdb --pwfile)
        (ray_secret_dir / "ray_token").chmod(0o644)  # as `ray get-auth-token --generate` writes it

        # MLflow host: PostgreSQL on its own address, then the MLflow entrypoint of the compose service
        pgdata = work / "pgdata"
        pgdata.mkdir()
        shutil.chown(pgdata, "postgres")
        sh(
            "runuser",
            "-u",
            "postgres",
            "--",
            INITDB[-1],
            "-D",
            str(pgdata),
            "-U",
            "mlflow",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={secret_dir / 'postgres_password'}",
        )
        with open(pgdata / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {subnet}.0/24 scram-sha-256\n")
        postgres = str(Path(INITDB[-1]).parent / "postgres")
        hosts.start(
            "mlflow",
            [
                postgres,
                "-D",
                str(pgdata),
                "-c",
                f"listen_addresses={mlflow_ip}",
                "-c",
                f"unix_socket_directories={pgdata}",
                "-p",
                "5432",
            ],
            {"PATH": os.environ["PATH"]},
            logs["postgres"],
            user="postgres",
        )
        wait_for("postgres", lambda: _port_open(mlflow_ip, 5432), 60, [logs["postgres"]])
        sh(
            "ip",
            "netns",
            "exec",
            f"{tag}-mlflow",
            "runuser",
            "-u",
            "postgres",
            "--",
            "createdb",
            "-h",
            str(pgdata),
            "-U",
            "mlflow",
            "mlflow",
        )
        base_env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(work), "LANG": "C.UTF-8"}
        hosts.start(
            "mlflow",
            ["bash", str(DOCKER / "mlflow-entrypoint.sh")],
            {
                **base_env,
                "SECRETS_DIR": str(secret_dir),
                "TMPDIR": str(work),  # its private folder of passwords goes with the test's folder
                "POSTGRES_HOST": mlflow_ip,
                "POSTGRES_USER": "mlflow",
                "POSTGRES_DB": "mlflow",
                "MLFLOW_ADMIN_USERNAME": "admin",
                "MLFLOW_WRITER_USERNAME": "paradis-writer",
                "ARTIFACTS_DIR": str(work / "mlartifacts"),
                "MLFLOW_HOST": mlflow_ip,
                "MLFLOW_ALLOWED_HOSTS": f"{mlflow_ip},{mlflow_ip}:5000",
            },
            logs["mlflow"],
        )
        wait_for("mlflow", lambda: _http_ok(f"http://{mlflow_ip}:5000/health"), 120, [logs["mlflow"]])

        # Ray hosts: the compose services' environment and commands
        shared = work / "shared"
        ray_env = {
            **base_env,
            "SECRETS_DIR": str(ray_secret_dir),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(ray_secret_dir / "ray_token"),
            "MLFLOW_TRACKING_URI": f"http://{mlflow_ip}:5000",
            "MLFLOW_TRACKING_USERNAME": "paradis-writer",
            "PARADIS_HOME": str(shared / "paradis"),
            "PARADIS_CACHE": str(work / "cache"),
        }
        entry = ["bash", str(DOCKER / "entrypoint.sh")]
        hosts.start(
            "head",
            [
                *entry,
                "ray",
                "start",
                "--head",
                "--port=6379",
                "--dashboard-host=0.0.0.0",
                "--dashboard-port=8265",
                "--num-cpus=0",
                "--disable-usage-stats",
                "--block",
                f"--node-ip-address={head_ip}",
                # one machine stands for several: each node keeps its own temporary folder, as on real hosts
                f"--temp-dir={work / 'ray-head'}",
            ],
            {**ray_env, "RAY_TMPDIR": str(work / "ray-head")},
            logs["head"],
        )
        wait_for(
            "ray head",
            lambda: _http_ok(f"http://{head_ip}:8265/api/version") or _port_open(head_ip, 8265),
            120,
            [logs["head"]],
        )
        hosts.start(
            "worker",
            [
                *entry,
                "ray",
                "start",
                f"--address={head_ip}:6379",
                "--num-cpus=2",
                "--disable-usage-stats",
                "--block",
                f"--node-ip-address={worker_ip}",
                f"--temp-dir={work / 'ray-worker'}",
            ],
            {**ray_env, "RAY_TMPDIR": str(work / "ray-worker")},
            logs["worker"],
        )

        def two_nodes() -> bool:
            out = sh(
                "ip",
                "netns",
                "exec",
                f"{tag}-head",
                str(VENV_BIN / "ray"),
                "status",
                f"--address={head_ip}:6379",
                check=False,
                env={**ray_env, "RAY_TMPDIR": str(work / "ray-head")},
            )
            return out.returncode == 0 and out.stdout.count("node_") >= 2

        wait_for("ray worker", two_nodes, 120, [logs["head"], logs["worker"]])

        # the user, on the machine outside: ray job submit with the token
        submit_env = {**base_env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(ray_secret_dir / "ray_token")}
        job = sh(
            str(VENV_BIN / "ray"),
            "job",
            "submit",
            "--address",
            f"http://{head_ip}:8265",
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
            "search.variants={a: {training.beta: 0.0}, b: {training.beta: 0.1}}",
            check=False,
            env=submit_env,
            timeout=900,
            cwd=work,
        )
        yield Topology(tag, work, values, head_ip, worker_ip, mlflow_ip, ray_secret_dir, job)
    finally:
        hosts.close()
        shutil.rmtree(work, ignore_errors=True)


def _runs(t: Topology) -> tuple[object, list, list]:
    """The study's experiment, its study runs and its trial runs, read as the admin."""
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = t.admin
    try:
        client = MlflowClient(f"http://{t.mlflow_ip}:5000")
        exp = client.get_experiment_by_name("paradis-quickstart")
        runs = client.search_runs([exp.experiment_id])
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME")
        os.environ.pop("MLFLOW_TRACKING_PASSWORD")
    parents = [r for r in runs if r.data.tags.get("paradis.role") == "study"]
    children = [r for r in runs if r.data.tags.get("paradis.role") == "trial"]
    return exp, parents, children


def _environ(pid: str) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")


def test_no_mlflow_process_holds_a_password(topology):
    """Not on its command line (`ps`), nor in its environment: PostgreSQL's goes by a pgpass file, the
    admin's by the auth config file."""
    t, seen = topology, []
    for pid in sh("ip", "netns", "pids", f"{t.tag}-mlflow").stdout.split():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = _environ(pid)
            seen.append(cmdline.replace("\0", " "))
            for name in ("postgres_password", "mlflow_password", "mlflow_writer_password"):
                assert t.values[name] not in cmdline, (name, cmdline)
                assert t.values[name] not in environ, (name, cmdline)
    assert any("mlflow" in c and "server" in c for c in seen), seen
    assert any("postgresql+psycopg://mlflow@" in c for c in seen), seen  # the store URI, without password


def test_the_ray_token_is_made_private(topology):
    assert (topology.ray_secret_dir / "ray_token").stat().st_mode & 0o777 == 0o600  # by the entrypoint


def test_a_submitted_study_trains_on_the_worker_host_and_lands_in_mlflow(topology):
    out = topology.job.stdout + topology.job.stderr
    assert topology.job.returncode == 0, out[-5000:]
    assert "2 of 2 trials finished" in out
    _, parents, children = _runs(topology)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2
    assert {c.data.tags.get("paradis.node_ip") for c in children} == {topology.worker_ip}
    assert all(c.info.status == "FINISHED" and "acc/1.0" in c.data.metrics for c in children)


def test_the_server_refuses_a_call_without_credentials(topology):
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(
            f"http://{topology.mlflow_ip}:5000/api/2.0/mlflow/experiments/search?max_results=1", timeout=5
        )


def test_the_study_was_written_by_the_writer_account_which_is_no_admin(topology):
    """It created the experiment, so it owns it (MANAGE); no Ray process holds the admin's password."""
    t = topology
    exp, _, _ = _runs(t)
    status, user = _call(f"{t.api}/2.0/mlflow/users/get?username=paradis-writer", t.admin)
    assert status == 200 and user["user"]["is_admin"] is False, user
    status, perm = _call(
        f"{t.api}/3.0/mlflow/users/permissions/get?username=paradis-writer"
        f"&resource_type=experiment&resource_id={exp.experiment_id}",
        t.admin,
    )
    assert status == 200 and perm["permission"] == "MANAGE", perm
    seen = 0
    for ns in (f"{t.tag}-head", f"{t.tag}-worker"):
        for pid in sh("ip", "netns", "pids", ns).stdout.split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                environ = _environ(pid)
                seen += 1
                assert t.values["mlflow_password"] not in environ
                # nor the writer's own: it is in ~/.mlflow/credentials, not in every Ray process's environment
                assert t.values["mlflow_writer_password"] not in environ
    assert seen > 2


def _experiment_of_someone_else(t: Topology, name: str) -> str:
    status, made = _call(f"{t.api}/2.0/mlflow/experiments/create", t.admin, {"name": name})
    assert status == 200, made
    return made["experiment_id"]


def test_the_writer_can_do_no_admin_call_nor_write_to_another_experiment(topology):
    t = topology
    exp, _, _ = _runs(t)
    assert _call(f"{t.api}/2.0/mlflow/users/get?username=paradis-writer", t.writer)[0] == 200
    other = _experiment_of_someone_else(t, "people-only")
    refused = {
        "create a user": ("2.0/mlflow/users/create", {"username": "intruder", "password": "x" * 16}, "POST"),
        "make itself admin": (
            "2.0/mlflow/users/update-admin",
            {"username": "paradis-writer", "is_admin": True},
            "PATCH",
        ),
        "reset the admin's password": (
            "2.0/mlflow/users/update-password",
            {"username": "admin", "password": "y" * 16},
            "PATCH",
        ),
        "grant itself a permission": (
            "3.0/mlflow/users/permissions/grant",
            {
                "username": "paradis-writer",
                "resource_type": "experiment",
                "resource_id": other,
                "permission": "MANAGE",
            },
            "POST",
        ),
        "run in another's experiment": ("2.0/mlflow/runs/create", {"experiment_id": other}, "POST"),
        "delete another's experiment": ("2.0/mlflow/experiments/delete", {"experiment_id": other}, "POST"),
    }
    for what, (path, body, method) in refused.items():
        status, answer = _call(f"{t.api}/{path}", t.writer, body, method)
        assert status == 403, (what, status, answer)
    # default_permission NO_PERMISSIONS: it cannot even read another's experiment (the admin can)
    assert _call(f"{t.api}/2.0/mlflow/experiments/get?experiment_id={other}", t.writer)[0] == 403
    assert _call(f"{t.api}/2.0/mlflow/experiments/get?experiment_id={other}", t.admin)[0] == 200
    # while in its own experiment it may (the same call, so the 403s above are permissions, not routes)
    status, answer = _call(f"{t.api}/2.0/mlflow/runs/create", t.writer, {"experiment_id": exp.experiment_id})
    assert status == 200, answer
    assert _call(f"{t.api}/2.0/mlflow/users/get?username=intruder", t.admin)[0] == 404


def test_an_admins_grant_lets_the_writer_edit_another_experiment_but_not_delete_it(topology):
    """docker/README.md: the admin grants the writer EDIT on an experiment someone else made."""
    from mlflow.server.auth.client import AuthServiceClient

    t = topology
    other = _experiment_of_someone_else(t, "granted")
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = t.admin
    try:
        AuthServiceClient(f"http://{t.mlflow_ip}:5000").grant_user_permission(
            "paradis-writer", "experiment", other, "EDIT"
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME")
        os.environ.pop("MLFLOW_TRACKING_PASSWORD")
    status, answer = _call(f"{t.api}/2.0/mlflow/runs/create", t.writer, {"experiment_id": other})
    assert status == 200, answer
    assert _call(f"{t.api}/2.0/mlflow/experiments/delete", t.writer, {"experiment_id": other})[0] == 403  # EDIT only
    assert (
        _call(f"{t.api}/2.0/mlflow/experiments/get?experiment_id={other}", t.admin)[1]["experiment"]["lifecycle_stage"]
        == "active"
    )

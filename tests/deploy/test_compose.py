"""Static checks of the compose cluster and the images (there is no Docker engine here), and the
entrypoints run with stand-ins for ``ray`` and ``mlflow`` (what they pass on, and how)."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
GPU = yaml.safe_load((DOCKER / "docker-compose.gpu.yml").read_text())
SERVICES = COMPOSE["services"]
KNOWN_SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "environment",
    "secrets",
    "group_add",
    "volumes",
    "ports",
    "depends_on",
    "healthcheck",
    "networks",
    "restart",
    "shm_size",
    "deploy",
}


def _env(service: dict) -> dict:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_compose_file_is_well_formed():
    assert set(COMPOSE) <= {"name", "services", "secrets", "volumes", "networks"} | {
        k for k in COMPOSE if k.startswith("x-")
    }
    assert set(SERVICES) == {"postgres", "mlflow", "ray-head", "ray-worker"}
    for name, svc in SERVICES.items():
        assert set(svc) <= KNOWN_SERVICE_KEYS, (name, set(svc) - KNOWN_SERVICE_KEYS)
        assert "image" in svc, name
        for secret in svc.get("secrets", []):
            assert secret in COMPOSE["secrets"], (name, secret)
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            assert source.startswith(("./", "/", "${")) or source in COMPOSE["volumes"], (name, vol)
        for dep in svc.get("depends_on", {}):
            assert dep in SERVICES
    assert set(GPU["services"]) == {"ray-worker"}
    reservation = GPU["services"]["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert reservation["driver"] == "nvidia" and reservation["capabilities"] == ["gpu"]


def test_published_ports_are_loopback_only_and_gcs_is_never_published():
    published = []
    for name, svc in {**SERVICES, **GPU["services"]}.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
            published.append(str(port).rsplit(":", 1)[-1])
    assert "6379" not in published and "10001" not in published
    assert sorted(published) == ["5000", "8265"]


def test_token_authentication_and_secrets():
    for name in ("ray-head", "ray-worker"):
        env = _env(SERVICES[name])
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_token"
        assert "ray_token" in SERVICES[name]["secrets"]
    assert "basic-auth" in (DOCKER / "mlflow-entrypoint.sh").read_text()
    assert _env(SERVICES["postgres"])["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    for name, svc in SERVICES.items():  # no secret value in the compose file
        for key, _value in _env(svc).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key) and not key.endswith(("_FILE", "_PATH")):
                raise AssertionError(f"{name}: {key} is set in the compose file")
    assert (DOCKER / "secrets" / ".gitignore").read_text().startswith("*")


def test_every_service_that_writes_has_a_volume():
    writes = {
        "postgres": "/var/lib/postgresql/data",
        "mlflow": "/mlartifacts",
        "ray-head": "/shared",
        "ray-worker": "/shared",
    }
    for name, path in writes.items():
        targets = [v.split(":")[1] for v in SERVICES[name]["volumes"]]
        assert path in targets, name
    head = [v for v in SERVICES["ray-head"]["volumes"] if v.endswith(":/shared")]
    worker = [v for v in SERVICES["ray-worker"]["volumes"] if v.endswith(":/shared")]
    assert head == worker  # one storage path for every node: checkpoints reach any node


def test_images_are_pinned_non_root_with_health_checks_and_no_baked_secrets():
    for name, svc in SERVICES.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)
    for dockerfile in ("Dockerfile", "mlflow.Dockerfile"):
        text = (DOCKER / dockerfile).read_text()
        froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
        assert froms and all(":" in f and "latest" not in f for f in froms), froms
        assert re.search(r"^USER\s+(?!root)\w+", text, re.M), dockerfile
        assert "HEALTHCHECK" in text
        assert not re.search(r"(PASSWORD|TOKEN|SECRET)(?!_PATH|_FILE)\w*=\S", text), dockerfile
        assert "secrets" not in " ".join(re.findall(r"^COPY .*", text, re.M))
        for pin in re.findall(r'"([a-z\[\],]+)==([0-9.]+)"', text):
            assert pin[1]
    ray_df = (DOCKER / "Dockerfile").read_text()
    assert "ARG RAY_VERSION=2.60.0" in ray_df and "rayproject/ray:${RAY_VERSION}" in ray_df
    assert "ray[default,tune,train]==2.60.0" in ray_df


def test_env_example_lists_every_variable():
    used = set()
    for f in ("docker-compose.yml", "docker-compose.gpu.yml"):
        used |= set(re.findall(r"\$\{([A-Z_]+)(?::-[^}]*)?\}", (DOCKER / f).read_text()))
    listed = set(re.findall(r"^([A-Z_]+)=", (DOCKER / ".env.example").read_text(), re.M))
    assert used <= listed, used - listed


# --- secrets and defaults of a deployment -------------------------------------------------------------

RAY_NODES = ("ray-head", "ray-worker")
MLFLOW_HOST_ONLY = {"mlflow_password", "postgres_password", "mlflow_flask_secret"}


def test_ray_nodes_get_the_writer_account_never_the_admin():
    ray_services = [SERVICES[n] for n in RAY_NODES] + [COMPOSE["x-ray-node"], GPU["services"]["ray-worker"]]
    for svc in ray_services:
        assert not set(svc.get("secrets", [])) & MLFLOW_HOST_ONLY, svc.get("secrets")
    for name in RAY_NODES:
        env = _env(SERVICES[name])
        assert SERVICES[name]["secrets"] == ["ray_token", "mlflow_writer_password"]
        assert env["MLFLOW_TRACKING_USERNAME"] == "${MLFLOW_WRITER_USERNAME:-paradis-writer}"
        assert "ADMIN" not in env["MLFLOW_TRACKING_USERNAME"]
        assert not any("ADMIN" in str(v) for v in env.values()), env
    mlflow = SERVICES["mlflow"]
    assert {"mlflow_password", "mlflow_writer_password"} <= set(mlflow["secrets"])
    assert _env(mlflow)["MLFLOW_WRITER_USERNAME"] == "${MLFLOW_WRITER_USERNAME:-paradis-writer}"
    assert COMPOSE["secrets"]["mlflow_writer_password"] == {"file": "./secrets/mlflow_writer_password"}
    # the Ray nodes' entrypoint reads the writer's secret, not the admin's
    entry = (DOCKER / "entrypoint.sh").read_text()
    assert '< "$secrets/mlflow_writer_password"' in entry and '< "$secrets/mlflow_password"' not in entry
    # KubeRay: the Ray pods hold the writer's secret only
    rayjob = (DOCKER / "kuberay" / "rayjob.yaml").read_text()
    assert "mlflow_writer_password" in rayjob and "mlflow_password" not in rayjob
    assert "{name: MLFLOW_TRACKING_USERNAME, value: paradis-writer}" in rayjob
    # the password as ~/.mlflow/credentials, read-only, never in the Ray processes' environment
    job = yaml.safe_load(rayjob)["spec"]["rayClusterSpec"]
    for group in [job["headGroupSpec"], *job["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert all(e["name"] != "MLFLOW_TRACKING_PASSWORD" for e in container["env"]), container["env"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["mlflow-credentials"] == {
            "name": "mlflow-credentials",
            "mountPath": "/home/ray/.mlflow",
            "readOnly": True,
        }
        (volume,) = [v for v in pod["volumes"] if v["name"] == "mlflow-credentials"]
        assert volume["secret"]["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == 1000
    # make-secrets.sh writes it
    assert "mlflow_writer_password" in (DOCKER / "make-secrets.sh").read_text()
    # the image that runs the server carries the script that makes the account
    assert "docker/mlflow-writer.py" in (DOCKER / "mlflow.Dockerfile").read_text()


def test_no_password_on_the_mlflow_command_line_static():
    text = (DOCKER / "mlflow-entrypoint.sh").read_text()
    backend = re.search(r'^backend="(.*)"$', text, re.M).group(1)
    assert backend.startswith("postgresql+psycopg://") and "password" not in backend.lower()
    assert re.fullmatch(r"postgresql\+psycopg://[^:@]+@[^@]+", backend), backend  # user@host: no password
    assert 'export PGPASSFILE="$private/pgpass"' in text
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in text  # the admin password goes by the auth config file
    server = text[text.index("exec mlflow server") :]
    assert "password" not in server.lower() and "secret" not in server.lower()


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run_ray_entrypoint(
    tmp_path: Path, *args: str, env: dict | None = None
) -> tuple[subprocess.CompletedProcess, Path]:
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    _stub(bin_dir, "ray", 'printf "%s\\n" "$@" > "$STUB_OUT/argv"; env > "$STUB_OUT/env"\n')
    base = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "STUB_OUT": str(out),
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "PARADIS_HOME": str(tmp_path / "shared"),
    }
    proc = subprocess.run(
        ["bash", str(DOCKER / "entrypoint.sh"), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc, out


def _ray_secrets(tmp_path: Path, *, admin: bool = False) -> Path:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "ray_token").write_text("a" * 32 + "\n")
    (secrets_dir / "ray_token").chmod(0o644)  # as `ray get-auth-token --generate` writes it
    (secrets_dir / "mlflow_writer_password").write_text("writer-password-0123\n")
    if admin:
        (secrets_dir / "mlflow_password").write_text("admin-password-0123\n")
    return secrets_dir


def test_ray_entrypoint_makes_the_token_private_and_passes_the_writer_password(tmp_path):
    secrets_dir = _ray_secrets(tmp_path)
    proc, out = _run_ray_entrypoint(tmp_path, "ray", "start", "--address=ray-head:6379", "--block")
    assert proc.returncode == 0, proc.stderr
    assert _mode(secrets_dir / "ray_token") == 0o600
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
    assert env["RAY_AUTH_TOKEN_PATH"] == str(secrets_dir / "ray_token")
    # the writer's password is in ~/.mlflow/credentials (0600), which MLflow's client reads, not in the
    # environment every Ray process inherits
    assert "writer-password-0123" not in (out / "env").read_text()
    creds = tmp_path / "home" / ".mlflow" / "credentials"
    assert _mode(creds) == 0o600 and _mode(creds.parent) == 0o700
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlflow.utils.credentials import read_mlflow_creds as r; c = r(); print(c.username, c.password)",
        ],
        env={"HOME": str(tmp_path / "home"), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert read.stdout.split() == ["paradis-writer", "writer-password-0123"], read.stderr[-2000:]
    # a worker: no dashboard flag added
    assert (out / "argv").read_text().split() == ["start", "--address=ray-head:6379", "--block"]
    # a Ray token Ray would find by default (~/.ray/auth_token) is made private too
    home_token = tmp_path / "home" / ".ray" / "auth_token"
    home_token.parent.mkdir(parents=True)
    home_token.write_text("b" * 32)
    home_token.chmod(0o644)
    assert _run_ray_entrypoint(tmp_path, "true")[0].returncode == 0
    assert _mode(home_token) == 0o600


def test_ray_entrypoint_refuses_an_empty_writer_password(tmp_path):
    secrets_dir = _ray_secrets(tmp_path)
    (secrets_dir / "mlflow_writer_password").write_text("\n")
    proc, out = _run_ray_entrypoint(tmp_path, "ray", "start", "--address=ray-head:6379")
    assert proc.returncode == 1 and "mlflow_writer_password is empty" in proc.stderr, proc.stderr
    assert not (out / "argv").exists() and not (tmp_path / "home" / ".mlflow" / "credentials").exists()


def test_ray_entrypoint_refuses_without_a_token_and_warns_of_the_admin_secret(tmp_path):
    secrets_dir = _ray_secrets(tmp_path, admin=True)
    proc, _ = _run_ray_entrypoint(tmp_path, "true")
    assert proc.returncode == 0 and "admin password" in proc.stderr
    (secrets_dir / "ray_token").write_text("")
    proc, _ = _run_ray_entrypoint(tmp_path, "true")
    assert proc.returncode == 1 and "missing or empty" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser")
def test_ray_entrypoint_copies_a_token_it_cannot_chmod():
    """A token owned by someone else (a read-only mount alike): a private copy in ~/.ray/auth_token."""
    work = Path(tempfile.mkdtemp(prefix="paradis-entrypoint-", dir="/tmp"))  # reachable by nobody
    try:
        _copies_a_token_it_cannot_chmod(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _copies_a_token_it_cannot_chmod(work: Path) -> None:
    work.chmod(0o755)
    secrets_dir = _ray_secrets(work)
    secrets_dir.chmod(0o755)
    (secrets_dir / "mlflow_writer_password").chmod(0o644)
    home = work / "home"
    home.mkdir()
    shutil.chown(home, "nobody")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "ray", 'echo "$RAY_AUTH_TOKEN_PATH" > "$HOME/token_path"\n')
    entry = work / "entrypoint.sh"  # a copy nobody can read, wherever the checkout is
    shutil.copy(DOCKER / "entrypoint.sh", entry)
    entry.chmod(0o755)
    proc = subprocess.run(
        [shutil.which("runuser"), "-u", "nobody", "--", "env", f"HOME={home}", "bash", str(entry), "ray", "status"],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "SECRETS_DIR": str(secrets_dir),
            "PARADIS_HOME": str(home / "shared"),
        },
        capture_output=True,
        text=True,
        cwd=work,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    copy = home / ".ray" / "auth_token"
    assert (home / "token_path").read_text().strip() == str(copy)
    assert _mode(copy) == 0o600 and _mode(copy.parent) == 0o700
    assert copy.read_text() == (secrets_dir / "ray_token").read_text()
    assert _mode(secrets_dir / "ray_token") == 0o644  # not ours: left as it is


def test_dashboard_binds_to_loopback_unless_told_otherwise(tmp_path):
    text = (DOCKER / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD\s+(\[.*\])\s*$", text, re.M).group(1))
    assert cmd[:3] == ["ray", "start", "--head"]
    assert not any(a.startswith("--dashboard-host") for a in cmd)  # the entrypoint adds RAY_DASHBOARD_HOST
    assert re.search(r"^\s+RAY_DASHBOARD_HOST=127\.0\.0\.1\b", text, re.M)
    _ray_secrets(tmp_path)

    def dashboard_args(env=None, argv=cmd):
        proc, out = _run_ray_entrypoint(tmp_path, *argv, env=env)
        assert proc.returncode == 0, proc.stderr
        return [a for a in (out / "argv").read_text().split() if a.startswith("--dashboard-host")]

    assert dashboard_args() == ["--dashboard-host=127.0.0.1"]  # the image's default command, as it is
    assert dashboard_args({"RAY_DASHBOARD_HOST": "127.0.0.1"}) == ["--dashboard-host=127.0.0.1"]
    assert dashboard_args({"RAY_DASHBOARD_HOST": "0.0.0.0"}) == ["--dashboard-host=0.0.0.0"]
    # a command that names it (the compose head: 0.0.0.0 inside the container, published on 127.0.0.1)
    head = SERVICES["ray-head"]["command"]
    assert "--dashboard-host=0.0.0.0" in head
    assert dashboard_args(argv=head) == ["--dashboard-host=0.0.0.0"]
    assert dashboard_args(argv=[*cmd[:-1], "--dashboard-host", "10.0.0.5", "--block"]) == ["--dashboard-host"]


def test_mlflow_entrypoint_passes_passwords_by_file_never_on_the_command_line(tmp_path):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    values = {
        "postgres_password": "pg:pass\\word%0123",  # the characters pgpass and configparser escape
        "mlflow_password": "admin%password-0123",
        "mlflow_writer_password": "writer-password-0123",
        "mlflow_flask_secret": "flask-secret-0123",
    }
    for name, value in values.items():
        (secrets_dir / name).write_text(value + "\n")
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    out.mkdir()
    record = 'tr "\\0" "\\n" < /proc/$$/cmdline > "$STUB_OUT/$NAME.argv"; env > "$STUB_OUT/$NAME.env"\n'
    _stub(bin_dir, "python", "NAME=python; " + record)
    _stub(
        bin_dir,
        "mlflow",
        "NAME=mlflow; "
        + record
        + 'cp "$PGPASSFILE" "$STUB_OUT/pgpass"; cp "$MLFLOW_AUTH_CONFIG_PATH" "$STUB_OUT/ini"\n'
        + 'stat -c %a "$PGPASSFILE" "$MLFLOW_AUTH_CONFIG_PATH" "$(dirname "$PGPASSFILE")" > "$STUB_OUT/modes"\n',
    )
    proc = subprocess.run(
        ["bash", str(DOCKER / "mlflow-entrypoint.sh")],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "TMPDIR": str(tmp_path),
            "STUB_OUT": str(out),
            "SECRETS_DIR": str(secrets_dir),
            "POSTGRES_USER": "mlflow",
            "POSTGRES_DB": "mlflow",
            "POSTGRES_HOST": "postgres",
            "MLFLOW_WRITER_USERNAME": "paradis-writer",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    argv = (out / "mlflow.argv").read_text()
    assert "--backend-store-uri\npostgresql+psycopg://mlflow@postgres:5432/mlflow\n" in argv
    for name in ("mlflow", "python"):
        argv, env = (out / f"{name}.argv").read_text(), (out / f"{name}.env").read_text()
        for secret in ("postgres_password", "mlflow_password", "mlflow_writer_password"):
            assert values[secret] not in argv and values[secret] not in env, (name, secret)
    writer_env = (out / "python.env").read_text()
    assert f"MLFLOW_WRITER_PASSWORD_FILE={secrets_dir / 'mlflow_writer_password'}" in writer_env
    assert "MLFLOW_WRITER_USERNAME=paradis-writer" in writer_env
    assert (out / "python.argv").read_text().split()[-1] == str(DOCKER / "mlflow-writer.py")
    # the files: this user only, the values escaped as libpq and configparser read them
    assert (out / "modes").read_text().split() == ["600", "600", "700"]
    assert (out / "pgpass").read_text() == "postgres:5432:mlflow:mlflow:pg\\:pass\\\\word%0123\n"
    import configparser

    ini = configparser.ConfigParser()
    ini.read(out / "ini")
    assert ini["mlflow"]["admin_password"] == values["mlflow_password"]
    assert ini["mlflow"]["default_permission"] == "NO_PERMISSIONS"  # nobody reads what it was not granted
    assert ini["mlflow"]["database_uri"] == "postgresql+psycopg://mlflow@postgres:5432/mlflow"
    assert values["postgres_password"] not in (out / "ini").read_text()


def _make_secrets(tmp_path: Path, operator: tuple[int, int] | None = None) -> Path:
    """make-secrets.sh run in a copy of docker/, as this user, or as ``operator`` (uid, gid) through a
    stand-in for ``id``."""
    docker = tmp_path / "docker"
    docker.mkdir()
    shutil.copy(DOCKER / "make-secrets.sh", docker)
    shutil.copy(DOCKER / ".env.example", docker)
    (docker / "secrets").mkdir()
    (docker / "secrets" / "ray_token").write_text("from ray get-auth-token --generate")
    (docker / "secrets" / "ray_token").chmod(0o644)
    env = dict(os.environ)
    if operator:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        _stub(bin_dir, "id", f'case "$1" in -u) echo {operator[0]} ;; -g) echo {operator[1]} ;; esac\n')
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    subprocess.run(["bash", str(docker / "make-secrets.sh")], check=True, capture_output=True, timeout=60, env=env)
    return docker


SECRET_NAMES = {"ray_token", "mlflow_writer_password", "postgres_password", "mlflow_password", "mlflow_flask_secret"}


def _secrets_gid(docker: Path) -> str:
    return re.findall(r"^SECRETS_GID=(.*)$", (docker / ".env").read_text(), re.M)[-1]


def test_make_secrets_writes_private_files(tmp_path):
    docker = _make_secrets(tmp_path)
    assert {p.name for p in (docker / "secrets").iterdir()} == SECRET_NAMES
    assert _mode(docker / "secrets") == 0o700
    for p in (docker / "secrets").iterdir():
        assert _mode(p) == 0o600, p.name
        assert len(p.read_text()) >= 12 and not p.read_text().endswith("\n"), p.name
        # the containers run as uid 1000 and compose mounts the file as it is: root hands it to that user
        assert p.stat().st_uid == (1000 if os.geteuid() == 0 else os.geteuid()), p.name
    assert _secrets_gid(docker) == ("1000" if os.geteuid() in (0, 1000) else str(os.getegid()))
    # every variable of .env.example is still there, once
    assert (docker / ".env").read_text().startswith((DOCKER / ".env.example").read_text())
    assert (docker / "secrets" / "ray_token").read_text() == "from ray get-auth-token --generate"  # kept
    # the documented `ray get-auth-token --generate` flow says chmod 600, and so does the security page
    for doc in (DOCKER / "README.md", ROOT / "docs" / "SECURITY.md"):
        assert "chmod 600 ~/.ray/auth_token" in doc.read_text(), doc


def test_make_secrets_for_another_operator_shares_them_by_group_only(tmp_path):
    """An operator whose uid is not the containers' (1000): the files are 0640 with the operator's group,
    which .env names as SECRETS_GID and every service that mounts a secret adds to its user; run twice,
    .env keeps one SECRETS_GID line."""
    docker = _make_secrets(tmp_path, operator=(1234, 4321))
    for p in (docker / "secrets").iterdir():
        assert _mode(p) == 0o640, p.name
    subprocess.run(
        ["bash", str(docker / "make-secrets.sh")],
        check=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"},
    )
    assert _secrets_gid(docker) == "4321"
    assert len(re.findall(r"^SECRETS_GID=", (docker / ".env").read_text(), re.M)) == 1
    for name, service in SERVICES.items():
        if name != "postgres" and service.get("secrets"):  # postgres reads its secret as root, then drops
            assert service.get("group_add") == ["${SECRETS_GID:-1000}"], name


def _dockerignore_regex(pattern: str) -> re.Pattern:
    """One .dockerignore pattern as Docker (moby/patternmatcher) reads it."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern[i : i + 1] == "/":
                i += 1
            out += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch))
        i += 1
    return re.compile(f"^{out}$")


def _dockerignore() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((keep, _dockerignore_regex(pattern)))
    return rules


def _excluded(path: str, rules) -> bool:
    parts = path.split("/")
    excluded = False
    for keep, regex in rules:  # a pattern matches the path or a folder above it; the last match decides
        if any(regex.match("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not keep
    return excluded


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context():
    rules = _dockerignore()
    for path in (
        "docker/secrets/ray_token",
        "docker/secrets/mlflow_password",
        "docker/secrets/postgres_password",
        "docker/.env",
        ".venv/bin/python",
        ".venv/lib/python3.11/site-packages/mlflow/__init__.py",
        ".git/config",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/CACHEDIR.TAG",
        "paradis/__pycache__/cli.cpython-311.pyc",
        "paradis.egg-info/PKG-INFO",
        "mlruns/0/meta.yaml",
        "mlflow.db",
        "studies/mlflow.db",
        "outputs/run/metrics.json",
        "ray_results/study/tuner.pkl",
        "tests/deploy/test_compose.py",
    ):
        assert _excluded(path, rules), path
    # everything the Dockerfiles COPY is in, with every tracked file under it
    sources = set()
    for dockerfile in ("Dockerfile", "mlflow.Dockerfile"):
        for line in re.findall(r"^COPY\s+(.*)$", (DOCKER / dockerfile).read_text(), re.M):
            sources |= {a for a in line.split()[:-1] if not a.startswith("--")}
    assert {"paradis", "orchestration", "docker/mlflow-writer.py", "docker/entrypoint.sh"} <= sources
    tracked = subprocess.run(
        ["git", "ls-files", "--", *sorted(sources)], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(tracked) > len(sources)
    for path in [*sorted(sources), *tracked]:
        assert not _excluded(path, rules), path


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shell_scripts_are_shellcheck_clean():
    scripts = sorted(str(p) for p in DOCKER.glob("*.sh"))
    for script in scripts:
        assert "set -euo pipefail" in Path(script).read_text() or script.endswith("healthcheck.sh"), script
    proc = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout

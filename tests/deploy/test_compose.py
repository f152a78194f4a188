"""Static checks of the compose cluster and the images (there is no Docker engine here)."""

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
GPU = yaml.safe_load((DOCKER / "docker-compose.gpu.yml").read_text())
SERVICES = COMPOSE["services"]
KNOWN_SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "environment",
    "secrets",
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

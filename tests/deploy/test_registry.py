"""register: an export as an MLflow model version (its files as the version's artifacts, no pickled
flavour), tags and alias; export / plan / serve-bench from models:/NAME@ALIAS, digests checked; a
sqlite store in tmp_path."""

import hashlib
import json
import shutil
import tempfile

import pytest
import torch

from orchestration.deploy import main
from paradis import calibrate_bn, create_model
from paradis.deploy import read_manifest, verify_export

pytest.importorskip("mlflow")
SWITCHES = ["[1.0]", "[0.5, 0.5]"]
CONFIG = {"model": {"name": "mobilenet_v1_small"}, "data": {"name": "synthetic"}, "training": {"wide_factor": 1.2}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A trial run as the study's tracker leaves it: the checkpoint artifact and acc/* metrics."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("registry")
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_small", num_classes=10)
    for s in SWITCHES:
        calibrate_bn(model, s, [torch.randn(8, 1, 28, 28)])
    (folder / "ckpt").mkdir()
    torch.save({"model": model.state_dict(), "config": CONFIG, "history": []}, folder / "ckpt" / "checkpoint.pt")
    uri = f"sqlite:///{folder / 'mlflow.db'}"  # sqlite:////abs/path
    client = MlflowClient(uri)
    exp = client.create_experiment("study", artifact_location=(folder / "artifacts").as_uri())
    run = client.create_run(exp).info.run_id
    client.log_artifact(run, str(folder / "ckpt" / "checkpoint.pt"), "checkpoint")
    client.log_metric(run, "acc/0.5-0.5", 0.875)
    client.log_metric(run, "acc/1.0", 0.9)
    return {"uri": uri, "run": run, "client": client, "folder": folder}


def deploy(store, *args):
    return main([*args, "--tracking-uri", store["uri"]])


@pytest.fixture(scope="module")
def registered(store):
    """Version 1: [0.5, 0.5] logged to the trial run; version 2: [1.0] in a new run, alias prod."""
    base = ["register", "--run-id", store["run"], "--name", "paradis-small"]
    assert deploy(store, *base, "--switch", "[0.5, 0.5]", "--no-programs", "--alias", "prod") == 0
    assert deploy(store, *base, "--switch", "[1.0]", "--new-run", "--alias", "prod") == 0
    return store


def test_register_makes_versions_with_tags_and_an_alias_and_no_pickled_flavour(registered, capsys):
    client, run = registered["client"], registered["run"]
    v1, v2 = client.get_model_version("paradis-small", "1"), client.get_model_version("paradis-small", "2")
    assert str(client.get_model_version_by_alias("paradis-small", "prod").version) == "2"  # moved to the newest
    assert v1.run_id == run and v2.run_id != run  # logged to the trial run, then to a new run
    assert client.get_run(v2.run_id).data.tags["paradis.source_run"] == run
    tags = v1.tags
    assert tags["paradis.switch"] == "[0.5, 0.5]" and tags["paradis.accuracy"] == "0.875000"
    assert tags["paradis.formats"] == "pt" and v2.tags["paradis.formats"] == "pt,pt2"
    macs, params = json.loads(tags["paradis.device_macs"]), json.loads(tags["paradis.device_params"])
    assert len(macs) == len(params) == 2 and macs[0] == macs[1] > 0
    files = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run, tags["paradis.artifact_path"])}
    assert files == {"manifest.json", "device0.pt", "device1.pt", "fusion.pt"}
    everything = _all_artifacts(client, run) + _all_artifacts(client, v2.run_id)
    assert not any(p.endswith(("MLmodel", ".pkl", "python_model.pkl")) for p in everything)  # no flavour


def _all_artifacts(client, run_id, path=None):
    out = []
    for a in client.list_artifacts(run_id, path):
        out += _all_artifacts(client, run_id, a.path) if a.is_dir else [a.path]
    return out


def test_export_plan_and_verify_from_a_model_uri(registered, tmp_path, capsys):
    out = tmp_path / "out"
    assert deploy(registered, "export", "--model-uri", "models:/paradis-small@prod", "--output", str(out)) == 0
    assert "version 2 of paradis-small" in capsys.readouterr().out
    assert verify_export(out).switch == "[1.0]" and (out / "device0.pt2").is_file()
    assert deploy(registered, "export", "--model-uri", "models:/paradis-small/1", "--output", str(out)) == 2
    assert "is not empty" in capsys.readouterr().err  # the rules of --output hold here too
    assert deploy(registered, "export", "--model-uri", "models:/paradis-small/1", "--output", str(out), "--force") == 0
    assert read_manifest(out).switch == "[0.5, 0.5]" and sorted(p.name for p in out.iterdir()) == [
        "device0.pt", "device1.pt", "fusion.pt", "manifest.json",
    ]  # fmt: skip
    capsys.readouterr()
    uris = ["--model-uri", "models:/paradis-small/1", "--model-uri", "models:/paradis-small@prod"]
    assert deploy(registered, "plan", *uris, "--budget-ms", "1e4", "--macs-per-second", "1e9", "--json") == 0
    chosen = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert chosen["switch"] == "[1.0]" and chosen["accuracy"] == pytest.approx(0.9)
    assert deploy(registered, "plan", *uris, "--devices", "2", "--budget-ms", "1e4", "--measure-batch", "2") == 0
    assert "costs measured" in capsys.readouterr().out
    other = ["--switch", "[1.0]", "--output", str(tmp_path / "x")]  # a --switch beside it must be the version's
    assert deploy(registered, "export", "--model-uri", "models:/paradis-small/1", *other) == 2
    assert "holds switch [0.5, 0.5], not [1.0]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("models:/paradis-small@staging", "alias staging not found"),
        ("models:/paradis-small/9", "not found"),
        ("models:/nothing/1", "not found"),
        ("models:/paradis-small", "is not models:/NAME/VERSION or models:/NAME@ALIAS"),
        ("runs:/abc/model", "is not models:/NAME/VERSION or models:/NAME@ALIAS"),
    ],
)
def test_a_missing_or_malformed_model_uri_is_one_line(registered, uri, needle, tmp_path, capsys):
    assert deploy(registered, "export", "--model-uri", uri, "--output", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deploy export: error: ") and needle in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_a_tampered_version_is_refused(registered, tmp_path, capsys):
    """The store's files changed after registering: a device file, or the manifest with it."""
    client = registered["client"]
    v1 = client.get_model_version("paradis-small", "1")
    stored = registered["folder"] / "artifacts" / v1.run_id / "artifacts" / v1.tags["paradis.artifact_path"]
    original = (stored / "device1.pt").read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 1
    (stored / "device1.pt").write_bytes(bytes(damaged))
    try:
        assert (
            deploy(registered, "export", "--model-uri", "models:/paradis-small/1", "--output", str(tmp_path / "a")) == 2
        )
        assert "device1.pt: SHA-256" in capsys.readouterr().err
        # a matching manifest sent along with the file: refused by the digest the registry recorded
        raw = json.loads((stored / "manifest.json").read_text())
        raw["files"]["device1.pt"]["sha256"] = hashlib.sha256(bytes(damaged)).hexdigest()
        manifest_text = (stored / "manifest.json").read_text()
        (stored / "manifest.json").write_text(json.dumps(raw))
        assert (
            deploy(registered, "export", "--model-uri", "models:/paradis-small/1", "--output", str(tmp_path / "b")) == 2
        )
        assert "the manifest was changed; not loaded" in capsys.readouterr().err
        (stored / "manifest.json").write_text(manifest_text)
    finally:
        (stored / "device1.pt").write_bytes(original)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_version_whose_artifact_path_leaves_its_run_is_refused_before_downloading(registered, tmp_path, capsys):
    client = registered["client"]
    v1 = client.get_model_version("paradis-small", "1")
    kept = v1.tags["paradis.artifact_path"]
    client.set_model_version_tag("paradis-small", "1", "paradis.artifact_path", "../../..")
    try:
        assert (
            deploy(registered, "export", "--model-uri", "models:/paradis-small/1", "--output", str(tmp_path / "o")) == 2
        )
        err = capsys.readouterr().err
        assert "leaves its run's artifacts; refused, nothing downloaded" in err
        assert not (tmp_path / "o").exists()
    finally:
        client.set_model_version_tag("paradis-small", "1", "paradis.artifact_path", kept)


@pytest.mark.parametrize("name", ["/tmp/elsewhere", "../up", "a/b"])
def test_register_refuses_an_experiment_name_that_is_a_path(registered, name, capsys):
    try:
        code = deploy(registered, "register", "--experiment", name, "--name", "x", "--run-id", registered["run"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2 and "may hold letters, digits" in capsys.readouterr().err


def test_serve_bench_from_a_model_uri(registered, ray_tmpdir, capsys):
    """Each actor receives its checked device file of the version; the pool equals the in-process fusion."""
    ray = pytest.importorskip("ray")
    ray.shutdown()
    args = ["serve-bench", "--model-uri", "models:/paradis-small/1", "--batch", "4", "--warmup", "1", "--iters", "3"]
    assert deploy(registered, *args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "version 1 of paradis-small" in out and "switch [0.5, 0.5] on device0, device1" in out
    diff = float(out.split("max |pool - in-process| = ")[1].split(",")[0])
    assert diff < 1e-5
    assert not ray.is_initialized()


@pytest.fixture
def ray_tmpdir(monkeypatch):
    """A short Ray temporary folder of the test's own (Ray's socket paths have a length limit), removed after."""
    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)

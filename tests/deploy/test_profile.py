"""profile-devices: one pinned actor per named device (Ray custom resources), a latency table per
device (torch and ONNX Runtime, p50 and p95), and plan --latency-table choosing from those tables."""

import json
import shutil
import tempfile
import time

import pytest
import torch

ray = pytest.importorskip("ray")

from orchestration.deploy import DeviceFailure, DevicePool, main  # noqa: E402
from paradis import calibrate_bn, create_model  # noqa: E402
from paradis.deploy import Device, PlanError, SwitchOption, plan  # noqa: E402
from paradis.deploy.latency import (  # noqa: E402
    FORMAT,
    merged_rows,
    read_latency_table,
    read_latency_tables,
    table_latencies,
    write_latency_table,
)
from paradis.switch import parse_switch  # noqa: E402

SWITCHES = ["[1.0]", "[0.5, 0.5]"]
CONFIG = {"model": {"name": "mobilenet_v1_small"}, "data": {"name": "synthetic"}, "training": {"wide_factor": 1.2}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_small", num_classes=10)
    for s in SWITCHES:
        calibrate_bn(model, s, [torch.randn(8, 1, 28, 28)])
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    history = [{"acc/1.0": 0.9, "acc/0.5-0.5": 0.88}]
    torch.save({"model": model.state_dict(), "config": CONFIG, "history": history}, path)
    return path


def profile_args(checkpoint, out, *extra):
    args = ["profile-devices", "--checkpoint", str(checkpoint), "--device", "a", "--device", "b"]
    return [*args, "--batch", "2", "--warmup", "1", "--repeats", "5", "--output", str(out), *extra]


def test_on_a_local_ray_the_command_starts_ray_with_the_devices_resources(checkpoint, tmp_path, ray_tmpdir, capsys):
    """Runs first, before the module's Ray: the command starts its own, with {"a": 1, "b": 1}."""
    ray.shutdown()
    out = tmp_path / "tables"
    assert main(profile_args(checkpoint, out, "--switches", "[0.5, 0.5]", "--no-onnx")) == 0, capsys.readouterr().err
    assert not ray.is_initialized()  # shut down again
    tables = read_latency_tables([out])
    assert [t.device for t in tables] == ["a", "b"] and all(t.runtimes == ("torch",) for t in tables)
    assert main(profile_args(checkpoint, out, "--no-onnx")) == 2  # the tables are not overwritten
    assert "already holds ['a.json', 'b.json']; give --force" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ray_cluster():
    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        resources={"a": 1, "b": 1},
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=tmp,
    )
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def test_pinned_actors_need_their_resource_and_hold_it(ray_cluster, checkpoint):
    pool = DevicePool(["a", "b"], pin=True)
    try:
        assert len({i["pid"] for i in pool.info().values()}) == 2
        t0 = time.perf_counter()
        with pytest.raises(DeviceFailure, match=r"no node of the cluster offers the resource of device 'c'"):
            DevicePool(["a", "c"], pin=True)
        assert time.perf_counter() - t0 < 5  # refused at once, not after the start timeout
        # device a's resource is held by the pool: a second actor for "a" cannot start beside it
        with pytest.raises(DeviceFailure, match="did not start within 2 s"):
            DevicePool(["a"], pin=True, start_timeout_s=2)
    finally:
        pool.shutdown()
    with pytest.raises(DeviceFailure, match="is one of Ray's own resources"):
        DevicePool(["CPU"], pin=True)


def test_profile_devices_writes_a_table_per_device_that_plan_uses(ray_cluster, checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "tables"
    assert main(profile_args(checkpoint, out, "--switches", *SWITCHES)) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "device a (" in printed and "onnxruntime p50" in printed
    tables = read_latency_tables([out / "a.json", out / "b.json"])
    for t in tables:
        assert t.data["format"] == FORMAT and t.batch == 2 and t.runtimes == ("torch", "onnxruntime")
        assert t.data["host"]["threads"] == 1 and t.data["model"]["name"] == "mobilenet_v1_small"
        for row in t.data["switches"]:
            assert len(row["parts"]) == len(parse_switch(row["switch"]))
            for part in row["parts"]:
                for runtime in t.runtimes:
                    stats = part[runtime]
                    assert 0 < stats["min_s"] <= stats["p50_s"] <= stats["p95_s"] <= stats["max_s"] < 5
                    assert stats["repeats"] == 5
    assert {str(o.switch): o.accuracy for o in merged_rows(tables)} == {"[1.0]": 0.9, "[0.5, 0.5]": 0.88}

    # a generous budget: the most accurate switch, on the device whose table says it is faster there
    args = ["plan", "--latency-table", str(out), "--budget-ms", "10000", "--json"]
    assert main(args) == 0
    chosen = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    p95 = {t.device: t.seconds("torch", "p95")[parse_switch("[1.0]")][0] for t in tables}
    assert chosen["switch"] == "[1.0]" and chosen["assignment"] == [min(p95, key=p95.get)]
    assert chosen["latency_s"] == pytest.approx(min(p95.values()))
    assert main([*args, "--runtime", "onnxruntime", "--latency-stat", "p50"]) == 0
    capsys.readouterr()
    assert main(["plan", "--latency-table", str(out), "--budget-ms", "1e-6"]) == 2
    assert "no switch fits 2 device(s)" in capsys.readouterr().err


def table(device, seconds_by_switch, accuracy=None):
    """A latency table with given p50 = p95 seconds per sub-network."""
    accuracy = accuracy or {"[1.0]": 0.9, "[0.5, 0.5]": 0.88}
    rows = []
    for s, seconds in seconds_by_switch.items():
        parts = [{"index": i, "width": 0.5, "torch": {"p50_s": t, "p95_s": t}} for i, t in enumerate(seconds)]
        n = len(seconds)
        rows.append({"switch": s, "accuracy": accuracy[s], "device_macs": [1000] * n, "device_params": [10] * n,
                     "parts": parts})  # fmt: skip
    return {"format": FORMAT, "version": 1, "device": device, "batch": 8, "runtimes": ["torch"], "switches": rows}


def test_plan_from_measured_tables_puts_each_part_where_it_runs_fastest(tmp_path):
    # the phone is fast at the small first sub-network and slow at the second (say, its memory)
    write_latency_table(tmp_path / "phone.json", table("phone", {"[1.0]": [0.050], "[0.5, 0.5]": [0.004, 0.030]}))
    write_latency_table(tmp_path / "gpu.json", table("gpu", {"[1.0]": [0.012], "[0.5, 0.5]": [0.006, 0.008]}))
    tables = read_latency_tables([tmp_path])
    latencies = table_latencies(tables, "torch", "p95")
    devices = [Device(t.device) for t in tables]
    p = plan(devices, 0.011, merged_rows(tables), latencies=latencies)
    assert str(p.switch) == "[0.5, 0.5]" and [a.device for a in p.assignment] == ["phone", "gpu"]
    assert p.latency_s == pytest.approx(0.008) and "by profile-devices" in p.explain()
    assert str(plan(devices, 0.02, merged_rows(tables), latencies=latencies).switch) == "[1.0]"
    # a device without a table for a switch cannot run it
    only = {"gpu": latencies["gpu"], "phone": {k: v for k, v in latencies["phone"].items() if str(k) == "[1.0]"}}
    with pytest.raises(
        PlanError, match=r"\[0.5, 0.5\]: 2 sub-networks need 2 devices with a latency for them; none for: phone"
    ):
        plan(devices, 0.011, [o for o in merged_rows(tables) if str(o.switch) == "[0.5, 0.5]"], latencies=only)
    assert isinstance(merged_rows(tables)[0], SwitchOption)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda t: t.update(format="x"), "is not a paradis-latency-table of version 1"),
        (lambda t: t.update(device=7), "device 7 is not a name"),
        (lambda t: t.update(batch=0), "batch 0 is outside"),
        (lambda t: t.update(runtimes=["tensorrt"]), "runtimes ['tensorrt'] is not a list of torch, onnxruntime"),
        (lambda t: t["switches"][0]["parts"][0]["torch"].update(p95_s=-1.0), "torch p95_s -1.0 is outside"),
        (lambda t: t["switches"][0]["parts"].pop(), "parts must be a list of 1 entries"),
        (lambda t: t["switches"][0].update(accuracy=2.0), "accuracy 2.0 is outside [0, 1]"),
        (lambda t: t["switches"].append(t["switches"][0]), "switch [1.0] appears twice"),
        (lambda t: t["switches"].__setitem__(0, "fast"), "'fast' is not an object"),
    ],
)
def test_a_damaged_latency_table_is_refused(change, needle, tmp_path):
    data = table("a", {"[1.0]": [0.01], "[0.5, 0.5]": [0.004, 0.004]})
    change(data)
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="latency table") as err:
        read_latency_table(tmp_path / "a.json")
    assert needle in str(err.value)


@pytest.fixture
def ray_tmpdir(monkeypatch):
    """A short Ray temporary folder of the test's own (Ray's socket paths have a length limit), removed after."""
    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)

"""The Ray device pool: equivalence with the in-process switch, switching without reload, failures."""

import shutil
import tempfile

import pytest
import torch

ray = pytest.importorskip("ray")

from orchestration.deploy import DeviceFailure, DevicePool  # noqa: E402
from paradis import calibrate_bn, create_model  # noqa: E402
from paradis.deploy import Device, ExportError, TrainedModel, export_switch, plan, switch_table  # noqa: E402

SWITCHES = ["[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]"]
ACCURACY = {"[1.0]": 0.90, "[0.5, 0.5]": 0.89, "[0.5, 0.25, 0.25]": 0.87, "[4x0.25]": 0.88}


@pytest.fixture(scope="module")
def ray_cluster():
    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.shutdown()  # a session another module left open would make ray.init fail
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def trained():
    model = create_model("mobilenet_v1_small", num_classes=10)
    batches = [torch.randn(16, 1, 28, 28) for _ in range(2)]
    for s in SWITCHES:
        calibrate_bn(model, s, batches)
    return TrainedModel.of(model.eval(), "mobilenet_v1_small", (1, 28, 28), accuracy=ACCURACY)


def expected(trained, x, switch):
    with torch.no_grad():
        return trained.model(x, switch)


def test_pool_equals_the_in_process_switch_and_switching_needs_no_reload(ray_cluster, trained, tmp_path):
    pool = DevicePool(["a", "b", "c"], threads=1)
    x = torch.randn(6, 1, 28, 28)
    pool.load_full(trained, "[0.5, 0.25, 0.25]")
    torch.testing.assert_close(pool(x), expected(trained, x, "[0.5, 0.25, 0.25]"), rtol=1e-5, atol=1e-5)
    before = pool.info()
    assert len({i["pid"] for i in before.values()}) == 3  # three processes
    assert all(i["loads"] == 1 and i["threads"] == 1 and i["full_model"] for i in before.values())

    pool.set_switch("[0.5, 0.5]")  # the paper's example: one device drops out, no weights move
    torch.testing.assert_close(pool(x), expected(trained, x, "[0.5, 0.5]"), rtol=1e-5, atol=1e-5)
    after = pool.info()
    for name in before:
        assert after[name]["pid"] == before[name]["pid"]
        assert (after[name]["loads"], after[name]["bytes_received"]) == (1, before[name]["bytes_received"])
    assert after["a"]["parts"] == ["[0.5, 0.25, 0.25] #0", "[0.5, 0.5] #0"]
    # a plan: [1.0] is the most accurate, and goes to the fastest device
    pool.apply(
        plan([Device("a"), Device("b"), Device("c", speed=3.0)], 10.0, switch_table(trained), macs_per_second=1e9)
    )
    assert str(pool.switch) == "[1.0]" and pool.assignment == ["c"]
    torch.testing.assert_close(pool(x), expected(trained, x, "[1.0]"), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"switch \[8x0.125\] has no BN statistics"):
        pool.set_switch("[8x0.125]")  # refused here, not by the devices at the next call
    assert str(pool.switch) == "[1.0]"

    # sub-networks only: from an export folder each device receives its own file's weights
    export_switch(trained, "[0.5, 0.25, 0.25]", tmp_path, programs=False)
    full_bytes = before["a"]["bytes_received"]
    pool.load_switch(tmp_path)
    torch.testing.assert_close(pool(x), expected(trained, x, "[0.5, 0.25, 0.25]"), rtol=1e-5, atol=1e-5)
    parts = pool.info()
    for name, index in zip("abc", range(3)):
        state = torch.load(tmp_path / f"device{index}.pt", weights_only=True)
        got = parts[name]["bytes_received"] - full_bytes
        assert got == sum(t.numel() * t.element_size() for t in state.values())
        assert got < 0.4 * full_bytes
    with pytest.raises(RuntimeError, match=r"only the sub-networks of \[0.5, 0.25, 0.25\] from an export"):
        pool.set_switch("[0.5, 0.5]")
    damaged = bytearray((tmp_path / "device2.pt").read_bytes())
    damaged[100] ^= 1
    (tmp_path / "device2.pt").write_bytes(bytes(damaged))
    with pytest.raises(ExportError, match=r"device2\.pt: SHA-256 .* does not match the manifest"):
        pool.load_switch(tmp_path)  # refused before any device receives a weight
    assert pool.info() == parts
    pool.shutdown()
    with pytest.raises(
        DeviceFailure, match=r"1 device actors \(1 CPU\(s\), 1 GPU\(s\) each\) did not start within 2 s"
    ):
        DevicePool(1, gpus_per_device=1, start_timeout_s=2)  # the test cluster has no GPU


def test_a_killed_device_is_named_or_falls_back(ray_cluster, trained):
    pool = DevicePool(["gpu-a", "gpu-b"], threads=1)
    pool.load_full(trained, "[0.5, 0.5]")
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(pool(x), expected(trained, x, "[0.5, 0.5]"), rtol=1e-5, atol=1e-5)
    ray.kill(pool.actors["gpu-b"])
    with pytest.raises(DeviceFailure, match=r"device gpu-b failed while running switch \[0.5, 0.5\]") as err:
        pool(x)
    assert err.value.devices == ["gpu-b"] and "1 device(s) left: gpu-a" in str(err.value)
    # allowed to fall back: the most accurate switch that one device can run
    out = pool(x, allow_fallback=True)
    assert str(pool.switch) == "[1.0]" and pool.assignment == ["gpu-a"]
    torch.testing.assert_close(out, expected(trained, x, "[1.0]"), rtol=1e-5, atol=1e-5)
    assert pool.events == ["device gpu-b failed: switch [0.5, 0.5] -> [1.0] on gpu-a"]
    with pytest.raises(DeviceFailure, match=r"switch \[0.5, 0.5\] needs 2 devices; 1 working: gpu-a"):
        pool.set_switch("[0.5, 0.5]")
    pool.shutdown()  # frees its CPU for the next pool

    # sub-networks only, ranked by a table without [1.0] (say, too large for these devices): the
    # survivors are sent the sub-networks of the fall-back
    pool = DevicePool(["a", "b", "c"], threads=1, table=switch_table(trained, SWITCHES[1:]))
    pool.load_switch(trained, "[0.5, 0.25, 0.25]")
    ray.kill(pool.actors["a"])
    out = pool(x, allow_fallback=True)
    assert str(pool.switch) == "[0.5, 0.5]" and pool.assignment == ["b", "c"]
    torch.testing.assert_close(out, expected(trained, x, "[0.5, 0.5]"), rtol=1e-5, atol=1e-5)
    pool.shutdown()

    # a device that does not answer in time counts as failed: a batch of 512 takes far longer than 1 ms
    pool = DevicePool(["slow-a", "slow-b"], threads=1, call_timeout_s=1e-3)
    pool.load_full(trained, "[0.5, 0.5]")
    with pytest.raises(DeviceFailure, match=r"device slow-a, slow-b failed .*slow-a: no answer within 0.001 s"):
        pool(torch.randn(512, 1, 28, 28))
    assert pool.alive == []
    pool.shutdown()
    with pytest.raises(ValueError, match=r"call_timeout_s 0"):
        DevicePool(["x"], call_timeout_s=0)

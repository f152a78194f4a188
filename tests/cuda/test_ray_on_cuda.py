"""Ray on the GPU: a one-worker Ray Train trial with use_gpu (nccl), and the deploy pool's GPU actors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from paradis import calibrate_bn
from tests.cuda.common import CUDA, batch, build, record

pytestmark = CUDA

RUN = {
    "model": {"name": "mobilenet_v1_small"},
    "data": {"name": "synthetic", "synthetic_train": 256, "synthetic_test": 64},
    "training": {
        "method": "paradis",
        "switches": ["[1.0]", "[0.5, 0.5]"],
        "epochs": 2,
        "batch_size": 32,
        "max_steps_per_epoch": 4,
    },
    "evaluation": {"switches": ["[1.0]", "[0.5, 0.5]"], "calibration_batches": 1},
}


def test_one_worker_ray_train_trial_with_use_gpu_runs_on_nccl(ray_gpu_cluster, device, tmp_path):
    import ray.train
    from ray.train.torch import TorchTrainer

    from orchestration.trainable import train_worker

    on_gpu = device.type == "cuda"
    probe = tmp_path / "probe.json"

    def loop(config):  # defined here, so Ray pickles it by value; it runs the project's worker loop
        import json
        import os

        import ray.train.torch
        import torch
        import torch.distributed as dist

        from orchestration.trainable import train_worker as worker

        seen = {
            "initialized": dist.is_initialized(),
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "device": str(ray.train.torch.get_device()),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        if dist.is_initialized():  # one collective: the communicator really works on this device
            t = torch.ones(2, device=ray.train.torch.get_device())
            dist.all_reduce(t)
            seen["all_reduce"] = t.tolist()
        with open(config["probe"], "w") as f:
            json.dump(seen, f)
        worker(config)

    assert callable(train_worker)  # importable here too: the driver's view of the same module
    run = {**RUN, "device": "cuda" if on_gpu else "cpu"}
    trainer = TorchTrainer(
        loop,
        train_loop_config={"run": run, "probe": str(probe)},
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=on_gpu),
        run_config=ray.train.RunConfig(name="gpu-check", storage_path=str(tmp_path / "results")),
    )
    result = trainer.fit()
    seen = json.loads(probe.read_text())
    metrics = {k: v for k, v in result.metrics.items() if k != "table"}
    record(f"ray train 1 worker use_gpu={on_gpu}: worker saw {seen}; metrics {metrics}")
    assert result.error is None
    assert seen["initialized"] and seen["backend"] == ("nccl" if on_gpu else "gloo"), seen
    assert seen["device"].startswith("cuda" if on_gpu else "cpu") and seen["all_reduce"] == [1.0, 1.0], seen
    assert result.metrics["epoch"] == 2 and math.isfinite(result.metrics["loss"])
    assert 0.0 <= result.metrics["acc/1.0"] <= 1.0 and "acc/0.5-0.5" in result.metrics
    table = json.loads(result.metrics["table"])
    assert {row["switch"] for row in table} == {"[1.0]", "[0.5, 0.5]"}
    assert result.checkpoint is not None


@pytest.fixture(scope="module")
def trained():
    from paradis.deploy import TrainedModel

    model = build("mobilenet_v1_small")
    batches = [batch("mobilenet_v1_small", 16, seed=40 + i) for i in range(2)]
    for s in ("[1.0]", "[0.5, 0.5]"):
        calibrate_bn(model, s, batches)
    return TrainedModel.of(model.eval(), "mobilenet_v1_small", (1, 28, 28))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_device_pool_with_one_gpu_actor_and_two_actors_sharing_it(ray_gpu_cluster, device, trained):
    from orchestration.deploy import DevicePool

    on_gpu = device.type == "cuda"
    x = batch("mobilenet_v1_small", 8, seed=50)
    with torch.no_grad():
        want = {s: trained.model(x, s) for s in ("[1.0]", "[0.5, 0.5]")}

    pool = DevicePool(1, gpus_per_device=1.0 if on_gpu else 0.0, threads=1)
    try:
        (info,) = pool.info().values()
        assert info["device"].startswith("cuda" if on_gpu else "cpu"), info
        pool.load_full(trained, "[1.0]")
        out = pool(x)
        assert out.device.type == "cpu" and out.shape == want["[1.0]"].shape
        err = _rel(out, want["[1.0]"])
        record(f"device pool, one {'GPU' if on_gpu else 'CPU'} actor, [1.0]: rel to in-process CPU {err:.1e} ({info})")
        assert err < 1e-2  # the actor keeps PyTorch's defaults: TF32 convolutions on the GPU
    finally:
        pool.shutdown()

    # a switch's two sub-networks on two actors that share the one GPU, half of it each
    pool = DevicePool(2, gpus_per_device=0.5 if on_gpu else 0.0, threads=1)
    try:
        pool.load_full(trained, "[0.5, 0.5]")
        errs = {"[0.5, 0.5]": _rel(pool(x), want["[0.5, 0.5]"])}
        pool.set_switch("[1.0]")
        errs["[1.0]"] = _rel(pool(x), want["[1.0]"])
        infos = pool.info()
        assert len({i["pid"] for i in infos.values()}) == 2
        assert all(i["loads"] == 1 for i in infos.values())  # switching moved no weights
        record(f"device pool, two actors on half a GPU each: rel to in-process CPU {errs}")
        assert max(errs.values()) < 1e-2, errs
    finally:
        pool.shutdown()

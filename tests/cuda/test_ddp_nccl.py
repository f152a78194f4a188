"""DistributedDataParallel on nccl, as a Ray Train worker wraps the model: one process, one GPU."""

from __future__ import annotations

import contextlib
import copy
import socket

import torch
import torch.distributed as dist
import torch.nn.functional as F

from tests.cuda.common import CUDA, batch, build, record

pytestmark = CUDA

TASKS = ["[1.2]", "[1.0]", "[0.5, 0.5]", "[4x0.25]"]  # a ParaDiS step: the teacher first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_on_nccl_gives_the_plain_gradients_over_a_paradis_step(device, exact_fp32):
    """Gradients accumulated over the switches of a step under no_sync and reduced on the last one's
    backward (as paradis.training.train_step does), twice: a parameter left out of the reduction would
    fail the second step. DDP with one rank must give exactly the plain model's weights."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        assert dist.get_backend() == backend
        t = torch.full((3,), 2.0, device=device)
        dist.all_reduce(t)  # a real collective on the communicator, as DDP's gradient buckets use
        dist.barrier()
        assert t.tolist() == [2.0, 2.0, 2.0]
        model = build("mobilenet_v1_small").to(device).train()
        plain = copy.deepcopy(model)
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
        opts = {id(net): torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9) for net in (ddp, plain)}
        for step in range(2):
            x = batch("mobilenet_v1_small", 16, seed=30 + step).to(device)
            y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(step)).to(device)
            for net in (ddp, plain):
                opt = opts[id(net)]
                opt.zero_grad(set_to_none=True)
                for i, switch in enumerate(TASKS):
                    sync = net.no_sync() if net is ddp and i < len(TASKS) - 1 else contextlib.nullcontext()
                    with sync:
                        F.cross_entropy(net(x, switch), y).backward()
                opt.step()
        worst = max(
            ((a - b).norm() / b.norm().clamp_min(1e-30)).item() for a, b in zip(model.parameters(), plain.parameters())
        )
        record(f"ddp {backend} world 1, 2 steps of {len(TASKS)} switches: weights rel to plain {worst:.1e}")
        assert worst < 1e-6, worst
    finally:
        dist.destroy_process_group()

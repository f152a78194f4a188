"""One device of a deployment, in plain PyTorch: holds the full model or one sub-network and runs it.

The orchestration layer wraps :class:`DeviceWorker` in a Ray actor (``orchestration/deploy.py``); kept
here so that what a device does is testable, and usable, without Ray.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from paradis.deploy.timing import latency_summary, measure_times
from paradis.deploy.trained import model_from_args
from paradis.switch import Switch, SwitchLike, parse_switch


class PartMissing(RuntimeError):
    """A device asked to run a sub-network it does not hold (and it has no full model to cut it from)."""


def state_bytes(state: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


class DeviceWorker:
    """A device: ``threads`` CPU threads, or a GPU (``device="cuda"``).

    It holds either the full model (:meth:`load_full`; every switch's sub-networks are then cut from it
    on first use and cached, so changing the switch moves no weights) or single sub-networks
    (:meth:`load_part`). ``loads`` and ``bytes_received`` count the weights sent to it.
    ``channels_last`` runs the convolutions in NHWC layout (markedly faster on CPUs through oneDNN).
    """

    def __init__(self, name: str, *, threads: int | None = 1, device: str = "cpu", channels_last: bool = True):
        if threads:
            torch.set_num_threads(int(threads))
        self.name = name
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = None
        self.model_args: dict[str, Any] | None = None
        self.parts: dict[tuple[Switch, int], torch.nn.Module] = {}
        self.loads = 0
        self.bytes_received = 0

    # loading ----------------------------------------------------------------------------------
    def load_full(self, model_args: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> int:
        """Hold the full model; returns the bytes of weights received."""
        model = model_from_args(model_args)
        model.load_state_dict(state)
        self.model = model.to(self.device).eval()
        self.model_args = dict(model_args)
        self.parts.clear()
        return self._count(state)

    def load_part(
        self, model_args: Mapping[str, Any], switch: SwitchLike, index: int, state: Mapping[str, torch.Tensor]
    ) -> int:
        """Hold sub-network ``index`` of ``switch`` only (the state dict of an exported device file)."""
        s = parse_switch(switch)
        net = model_from_args(model_args).extract(s, missing_stats_ok=True).subnets[index]
        net.load_state_dict(state)
        self.model, self.model_args = None, dict(model_args)
        self.parts = {(s, index): self._place(net)}
        return self._count(state)

    def _count(self, state: Mapping[str, torch.Tensor]) -> int:
        n = state_bytes(state)
        self.loads += 1
        self.bytes_received += n
        return n

    def part(self, switch: SwitchLike, index: int) -> torch.nn.Module:
        s = parse_switch(switch)
        key = (s, index)
        if key not in self.parts:
            if self.model is None:
                held = ", ".join(f"{sw} #{i}" for sw, i in self.parts) or "nothing"
                raise PartMissing(f"device {self.name} holds {held}, not sub-network {index} of {s}, and no full model")
            self.parts[key] = self._place(self.model.extract(s).subnets[index])
        return self.parts[key]

    def _place(self, net: torch.nn.Module) -> torch.nn.Module:
        return net.to(self.device, memory_format=self.memory_format).eval()

    # running ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, x: torch.Tensor, switch: SwitchLike, index: int) -> torch.Tensor:
        """Sub-network ``index`` of ``switch`` on ``x``: its partial output, on the CPU."""
        net = self.part(switch, index)
        x = x.to(self.device, non_blocking=True)
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return net(x).cpu()

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": os.getpid(),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "full_model": self.model is not None,
            "parts": [f"{s} #{i}" for s, i in self.parts],
            "loads": self.loads,
            "bytes_received": self.bytes_received,
        }

    def time_part(
        self, switch: SwitchLike, index: int, x: torch.Tensor, *, warmup: int = 3, repeats: int = 10
    ) -> dict[str, float | int]:
        """Latency of sub-network ``index`` of ``switch`` on ``x`` here, input transfer and output
        copy included: :func:`~paradis.deploy.timing.latency_summary` (``p50_s``, ``p95_s``, ...)."""
        times = measure_times(lambda: self.forward(x, switch, index), warmup=warmup, repeats=repeats)
        return latency_summary(times)

    def time_onnx(self, model: bytes, x: torch.Tensor, *, warmup: int = 3, repeats: int = 10) -> dict[str, float | int]:
        """Latency of an ONNX sub-network (its verified bytes) on ONNX Runtime here, with this device's
        thread count: :func:`~paradis.deploy.timing.latency_summary`."""
        from paradis.deploy.onnx import onnx_runner

        run = onnx_runner(model, torch.get_num_threads())
        return latency_summary(measure_times(lambda: run(x), warmup=warmup, repeats=repeats))

    def host(self) -> dict[str, Any]:
        """Where this device runs: host name, process, CPU model, threads, torch and ONNX Runtime versions."""
        import importlib.metadata
        import platform

        try:
            ort = importlib.metadata.version("onnxruntime")
        except importlib.metadata.PackageNotFoundError:
            ort = None
        return {
            "hostname": platform.node(),
            "pid": os.getpid(),
            "cpu": _cpu_model(),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "onnxruntime": ort,
        }


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else the platform's processor string."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

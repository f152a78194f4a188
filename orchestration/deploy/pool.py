"""The device pool: one Ray actor per device, each a :class:`paradis.deploy.DeviceWorker`.

The sub-networks of the switch run in parallel on the same input and the driver fuses their partial
outputs (sum, plus the classifier's bias once). With the full model on every actor
(:meth:`DevicePool.load_full`) changing the switch moves no weights; with :meth:`DevicePool.load_switch`
each actor receives only its sub-network. A device that fails raises :class:`DeviceFailure` naming it,
or, with ``allow_fallback``, the pool continues with the most accurate switch that fits the devices left.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import Enum
from typing import Any

import torch

from paradis.deploy import (
    DeviceWorker,
    ExportError,
    Plan,
    SwitchOption,
    TrainedModel,
    best_fallback,
    read_manifest,
)
from paradis.deploy.load import load_fusion, load_state
from paradis.switch import Switch, SwitchLike, parse_switch
from paradis.util import first_line


class DeviceFailure(RuntimeError):
    """A device of the pool failed (its actor died or became unreachable)."""

    def __init__(self, message: str, devices: Sequence[str]):
        super().__init__(message)
        self.devices = list(devices)


_ACTOR_CLASS = None


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        _ACTOR_CLASS = ray.remote(DeviceWorker)
    return _ACTOR_CLASS


class Holding(Enum):
    """What the devices hold, which decides what a change of switch costs."""

    NOTHING = "nothing"
    FULL_MODEL = "the full trained model on every device: any switch, nothing sent"
    MODEL_PARTS = "each device its sub-network of a trained model: a new switch is cut and sent"
    EXPORT_PARTS = "each device its sub-network of an export folder: no other switch can be sent"


class DevicePool:
    """One Ray actor per device. ``devices`` is a count or a list of names.

    ``threads``: CPU threads of each actor (``torch.set_num_threads`` in the actor, and its Ray CPU
    reservation); ``gpus_per_device`` > 0 puts each actor on its own GPU. ``table`` (the planner's
    rows) ranks switches for the fall-back; without it the trained model's accuracies are used.
    ``channels_last``: the devices run the convolutions in NHWC layout (faster on CPUs).
    ``pin``: the actor of device ``NAME`` requests the custom resource ``{NAME: 1}``, so it runs on the
    node started with ``ray start --resources '{"NAME": 1}'`` and two devices never share a node by
    accident; a resource no node offers is refused at once, naming it.
    """

    def __init__(
        self,
        devices: int | Sequence[str],
        *,
        threads: int = 1,
        gpus_per_device: float = 0.0,
        table: Sequence[SwitchOption] | None = None,
        channels_last: bool = True,
        start_timeout_s: float = 120.0,
        call_timeout_s: float | None = None,
        pin: bool = False,
    ):
        import ray

        if call_timeout_s is not None and not call_timeout_s > 0:
            raise ValueError(f"call_timeout_s {call_timeout_s!r} must be a positive number of seconds or None")
        self.call_timeout_s = call_timeout_s
        names = [f"device{i}" for i in range(devices)] if isinstance(devices, int) else list(devices)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"devices {names!r}: give a positive count or distinct names")
        if not ray.is_initialized():
            raise RuntimeError("Ray is not initialized: call ray.init(...) before creating a DevicePool")
        if pin:
            check_pinnable(names)
        self.names, self.alive, self.pinned = names, list(names), pin
        self.actors = _start_actors(names, threads, gpus_per_device, channels_last, pin)
        self.table = list(table) if table is not None else None
        self.trained: TrainedModel | None = None  # the model the devices' weights come from, if any
        self.holding = Holding.NOTHING
        self.switch: Switch | None = None
        self.assignment: list[str] = []
        self.bias: torch.Tensor | None = None
        self.events: list[str] = []
        self._wait_started(start_timeout_s, f"{threads} CPU(s), {gpus_per_device:g} GPU(s) each")

    def _wait_started(self, timeout_s: float, what: str) -> None:
        """Fail here, not at the first call: every actor answers within ``timeout_s``."""
        import ray

        try:
            ray.get([a.info.remote() for a in self.actors.values()], timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise DeviceFailure(
                f"{len(self.names)} device actors ({what}) did not start within {timeout_s:g} s; "
                f"the cluster has {ray.cluster_resources()}",
                self.names,
            ) from None
        except ray.exceptions.RayActorError as err:  # an actor died while starting (e.g. no usable GPU)
            self.shutdown()
            raise DeviceFailure(f"a device actor died while starting: {first_line(err)}", self.names) from None

    # loading ----------------------------------------------------------------------------------
    def load_full(self, trained: TrainedModel, switch: SwitchLike | None = None) -> None:
        """Every device holds the full model (sent once through the object store)."""
        import ray

        state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
        ref = ray.put(state)
        self._get_all({n: self.actors[n].load_full.remote(trained.model_args(), ref) for n in self.alive})
        self.trained, self.holding = trained, Holding.FULL_MODEL
        self.bias = _bias_of(trained)
        self.set_switch(switch or trained.model.bn_switches()[0])

    def load_switch(
        self,
        source: TrainedModel | str | os.PathLike,
        switch: SwitchLike | None = None,
        assignment: Sequence[str] | None = None,
    ) -> None:
        """Each assigned device receives only its sub-network: cut from a trained model, or the
        ``device{i}.pt`` files of an export folder (then ``switch`` is the manifest's)."""
        import ray

        if isinstance(source, TrainedModel):
            if switch is None:
                raise ValueError("load_switch of a trained model needs the switch")
            s = source.model.resolve(switch)
            nets = source.model.eval().extract(s).subnets
            states = [net.state_dict() for net in nets]
            args, bias = source.model_args(), _bias_of(source)
            self.trained, holding = source, Holding.MODEL_PARTS
        else:
            manifest = read_manifest(source)
            s = manifest.parsed_switch
            if switch is not None and parse_switch(switch) != s:
                raise ExportError(f"{str(source)!r} holds switch {s}, not {parse_switch(switch)}")
            states = [load_state(source, d.index, manifest) for d in manifest.devices]  # digests checked
            args, bias = manifest.model, load_fusion(source, manifest).bias
            self.trained, holding = None, Holding.EXPORT_PARTS
        where = self._check_assignment(s, assignment)
        self._get_all(
            {dev: self.actors[dev].load_part.remote(args, str(s), i, ray.put(states[i])) for i, dev in enumerate(where)}
        )
        self.holding, self.switch, self.assignment = holding, s, where
        self.bias = None if bias is None else bias.detach().cpu()

    def set_switch(self, switch: SwitchLike, assignment: Sequence[str] | None = None) -> None:
        """Run ``switch`` from now on. With the full model on the devices nothing is sent; with single
        sub-networks they are replaced (which needs the trained model)."""
        if self.holding is Holding.NOTHING:
            raise RuntimeError("the pool holds no model: call load_full or load_switch first")
        s = parse_switch(switch)
        if self.trained is not None:  # FULL_MODEL or MODEL_PARTS
            s = self.trained.model.resolve(s)
            if not self.trained.model.has_bn_stats(s):  # else the devices would fail at the first call
                raise ValueError(
                    f"switch {s} has no BN statistics in this model; switches with statistics: "
                    f"{', '.join(map(str, self.trained.model.bn_switches())) or 'none'}"
                )
        where = self._check_assignment(s, assignment)
        if self.holding is not Holding.FULL_MODEL and (s != self.switch or where != self.assignment):
            if self.holding is Holding.EXPORT_PARTS:
                raise RuntimeError(
                    f"the devices hold only the sub-networks of {self.switch} from an export folder; "
                    f"load {s} with load_switch"
                )
            self.load_switch(self.trained, s, where)
            return
        self.switch, self.assignment = s, where

    def apply(self, chosen: Plan) -> None:
        """Run a planner's choice: its switch, each sub-network on the device it was assigned to."""
        self.set_switch(chosen.switch, [a.device for a in chosen.assignment])

    def _check_assignment(self, s: Switch, assignment: Sequence[str] | None) -> list[str]:
        if assignment is None:
            if len(s) > len(self.alive):
                raise DeviceFailure(
                    f"switch {s} needs {len(s)} devices; {len(self.alive)} working: {', '.join(self.alive)}",
                    [n for n in self.names if n not in self.alive],
                )
            return self.alive[: len(s)]
        where = list(assignment)
        if len(where) != len(s) or len(set(where)) != len(where):
            raise ValueError(f"assignment {where!r}: switch {s} needs {len(s)} distinct devices")
        for dev in where:
            if dev not in self.actors:
                raise ValueError(f"assignment {where!r}: unknown device {dev!r} (devices: {', '.join(self.names)})")
            if dev not in self.alive:
                raise DeviceFailure(f"device {dev} has failed and cannot run a sub-network", [dev])
        return where

    # running ----------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, *, allow_fallback: bool = False) -> torch.Tensor:
        """The fused output of the current switch on ``x``: its sub-networks run in parallel."""
        import ray

        if self.switch is None:
            raise RuntimeError("the pool holds no model: call load_full or load_switch first")
        x_ref = ray.put(x.detach().cpu())
        futures = {
            dev: self.actors[dev].forward.remote(x_ref, str(self.switch), i) for i, dev in enumerate(self.assignment)
        }
        partials, failed = self._get_each(futures, self.call_timeout_s)
        if failed:
            self._mark_failed(failed)
            if not allow_fallback:
                raise DeviceFailure(
                    f"device {', '.join(failed)} failed while running switch {self.switch} "
                    f"({', '.join(f'{d}: {why}' for d, why in failed.items())}); "
                    f"{len(self.alive)} device(s) left: {', '.join(self.alive) or 'none'}",
                    list(failed),
                )
            self._fall_back(list(failed))
            return self(x, allow_fallback=True)
        out = torch.stack(partials).sum(0)
        return out if self.bias is None else out + self.bias

    def _get_each(self, futures: dict[str, Any], timeout: float | None = None) -> tuple[list[Any], dict[str, str]]:
        """The results of the devices that answered, and ``{device: error}`` for those whose actor died
        or that did not answer within ``timeout`` (a hung device counts as failed and is stopped)."""
        import ray
        from ray.exceptions import RayActorError  # ActorUnavailableError is one too

        pending = list(futures.values())
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        done = set(ready)
        results, failed = [], {}
        for dev, fut in futures.items():
            if fut not in done:
                failed[dev] = f"no answer within {timeout:g} s"
                ray.kill(self.actors[dev])
                continue
            try:
                results.append(ray.get(fut))
            except RayActorError as err:
                failed[dev] = type(err).__name__
        return results, failed

    def _get_all(self, futures: dict[str, Any]) -> list[Any]:
        out, failed = self._get_each(futures)
        if failed:
            self._mark_failed(failed)
            raise DeviceFailure(f"device {', '.join(failed)} failed while loading weights", list(failed))
        return out

    def _mark_failed(self, failed) -> None:
        self.alive = [n for n in self.alive if n not in failed]

    def _fall_back(self, failed: list[str]) -> None:
        old = self.switch
        available = self.trained.model.bn_switches() if self.trained is not None else [old]
        table = self.table
        if table is None and self.trained is not None:
            table = [
                SwitchOption(s, self.trained.accuracy.get(str(s)), (0,) * len(s), (0,) * len(s)) for s in available
            ]
        choice = best_fallback(table or [], len(self.alive), available)
        if choice is None:  # no accuracies known: the widest switch that fits, on the fewest devices
            fits = [s for s in available if len(s) <= len(self.alive)]
            choice = max(fits, key=lambda s: (s.total, -len(s))) if fits else None
        left = f"{len(self.alive)} device(s) left ({', '.join(self.alive) or 'none'})"
        if self.holding is Holding.EXPORT_PARTS:
            raise DeviceFailure(
                f"device {', '.join(failed)} failed while running switch {old}; the devices hold sub-networks "
                f"of an export folder, so no other switch can be sent to the {left}",
                failed,
            )
        if choice is None:
            raise DeviceFailure(
                f"device {', '.join(failed)} failed while running switch {old} and no switch with BN statistics "
                f"fits the {left}",
                failed,
            )
        self.set_switch(choice)
        self.events.append(
            f"device {', '.join(failed)} failed: switch {old} -> {choice} on {', '.join(self.assignment)}"
        )

    # profiling -------------------------------------------------------------------------------
    def _call(self, device: str, future: Any) -> Any:
        """One call's result from ``device``; a dead or silent device is a :class:`DeviceFailure`."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            return ray.get(future, timeout=self.call_timeout_s)
        except GetTimeoutError:
            ray.kill(self.actors[device])
            self._mark_failed([device])
            raise DeviceFailure(f"device {device} did not answer within {self.call_timeout_s:g} s", [device]) from None
        except RayActorError as err:
            self._mark_failed([device])
            raise DeviceFailure(f"device {device} failed ({type(err).__name__})", [device]) from None

    def host(self, device: str) -> dict[str, Any]:
        """Where ``device`` runs: host name, CPU model, threads, torch and ONNX Runtime versions."""
        return self._call(device, self.actors[device].host.remote())

    def time_switch(
        self,
        device: str,
        switch: SwitchLike,
        x: torch.Tensor,
        *,
        warmup: int = 5,
        repeats: int = 30,
        onnx: Sequence[bytes] | None = None,
    ) -> list[dict[str, dict]]:
        """Per sub-network of ``switch``, its latency on ``device`` alone (one sub-network at a time):
        ``{"torch": summary}``, plus ``"onnxruntime"`` for the ONNX files ``onnx`` (one per sub-network).
        The device needs the full model (:meth:`load_full`)."""
        import ray

        if self.holding is not Holding.FULL_MODEL:
            raise RuntimeError("time_switch needs the full model on the devices: call load_full first")
        s = parse_switch(switch)
        x_ref = ray.put(x.detach().cpu())
        actor = self.actors[device]
        parts = []
        for i in range(len(s)):
            future = actor.time_part.remote(str(s), i, x_ref, warmup=warmup, repeats=repeats)
            part = {"torch": self._call(device, future)}
            if onnx is not None:
                future = actor.time_onnx.remote(ray.put(onnx[i]), x_ref, warmup=warmup, repeats=repeats)
                part["onnxruntime"] = self._call(device, future)
            parts.append(part)
        return parts

    def info(self) -> dict[str, dict]:
        """Each working device's state: pid, loads, bytes of weights received, what it holds."""
        import ray

        return dict(zip(self.alive, ray.get([self.actors[n].info.remote() for n in self.alive])))

    def shutdown(self) -> None:
        import ray

        for actor in self.actors.values():
            ray.kill(actor)
        self.alive = []


RESERVED_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


def check_pinnable(names: Sequence[str]) -> None:
    """Every name is a custom resource some node of the cluster offers (at least 1 of)."""
    import ray

    for name in names:
        if name in RESERVED_RESOURCES or name.startswith(("node:", "accelerator_type:")):
            raise DeviceFailure(f"device name {name!r} is one of Ray's own resources; pick another name", [name])
    have = ray.cluster_resources()
    missing = [n for n in names if have.get(n, 0) < 1]
    if missing:
        hint = "; ".join(f"ray start --resources '{{\"{n}\": 1}}'" for n in missing[:4])
        raise DeviceFailure(
            f"no node of the cluster offers the resource of device {', '.join(map(repr, missing[:8]))}: start "
            f"that device's node with {hint}",
            missing,
        )


def _start_actors(names: Sequence[str], threads: int, gpus: float, channels_last: bool, pin: bool) -> dict[str, Any]:
    """One :class:`DeviceWorker` actor per name (each on the node with its resource when ``pin``)."""
    cls = _actor_class()
    device = "cuda" if gpus > 0 else "cpu"
    actors = {}
    for name in names:
        options: dict[str, Any] = {"num_cpus": threads, "num_gpus": gpus}
        if pin:
            options["resources"] = {name: 1}
        actors[name] = cls.options(**options).remote(name, threads=threads, device=device, channels_last=channels_last)
    return actors


def _bias_of(trained: TrainedModel) -> torch.Tensor | None:
    bias = getattr(trained.model.head, "bias", None)
    return None if bias is None else bias.detach().cpu().clone()

"""Every core busy through a study, and how busy they were.

When no trial waits to start (the last trials of a grid, the tail of a search), the cores the finished
trials held would idle. A small broker actor (:class:`CoreLedger` inside Ray) learns from the driver's
Tune callback whether any trial still waits and which trials run, and from each trial its node and
base CPUs; it shares a node's CPUs that no trial of the study holds evenly among the study's trials on
that node. A trial claims its share honestly: a holder actor reserves the CPUs on its node (so neither
Tune nor another Ray job is given them), and only once the holder is placed does the trial raise its
threads. It gives them back as soon as a trial waits again (a retried trial, a searcher's next one).

Utilisation: each trial reports its process's CPU seconds; :class:`CoreMeter` adds them up per trial
(a restored trial's counter starts again at zero) and the driver divides by the CPUs of the cluster
times the tuning loop's wall time.

This module imports no torch: the holder and the broker run in light Ray workers.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

POLL_S = 5.0  # how often a trial asks for its share (a Ray call, well under a millisecond of work)
PLACE_S = 30.0  # how long a trial lets Ray place its holder (a worker process starts) before giving up
BACKOFF_S = 60.0  # after a holder could not be placed (another job holds the CPUs), before trying again


class CoreLedger:
    """The broker's state, Ray-free: which trials run where with how many CPUs, and their shares."""

    def __init__(self, cap: int | None = None):
        self.cap = cap
        self.waiting = True  # until the driver says otherwise, no trial takes more than it holds
        self.running: set[str] = set()
        self.joined: dict[str, tuple[str, int]] = {}  # trial -> (node, base CPUs)
        self.node_cpus: dict[str, int] = {}

    def update(self, waiting: bool, running: list[str]) -> None:
        """From the driver: whether any trial waits to start, and the trials Tune runs now."""
        self.waiting, self.running = waiting, set(running)
        for trial in list(self.joined):
            if trial not in self.running:
                del self.joined[trial]

    def join(self, trial: str, node: str, base: int, node_cpus: int) -> None:
        self.joined[trial] = (node, base)
        self.node_cpus[node] = node_cpus

    def extra(self, trial: str) -> int:
        """The CPUs ``trial`` may take beyond its own now."""
        if self.waiting or trial not in self.joined or trial not in self.running:
            return 0
        node, base = self.joined[trial]
        peers = sorted(t for t, (n, _) in self.joined.items() if n == node and t in self.running)
        free = self.node_cpus[node] - sum(self.joined[t][1] for t in peers)
        if free <= 0:
            return 0
        share, rest = divmod(free, len(peers))
        extra = share + (peers.index(trial) < rest)
        return min(extra, max(0, self.cap - base)) if self.cap is not None else extra


class CoreMeter:
    """Busy CPU seconds of a study's trials, from each trial's cumulative ``cpu_seconds`` reports."""

    def __init__(self):
        self.done: dict[str, float] = {}  # seconds of a trial's earlier processes
        self.last: dict[str, float] = {}

    def add(self, trial: str, cpu_seconds: float) -> None:
        last = self.last.get(trial, 0.0)
        if cpu_seconds < last:  # a restored trial: a new process counts from zero
            self.done[trial] = self.done.get(trial, 0.0) + last
        self.last[trial] = cpu_seconds

    @property
    def busy(self) -> float:
        return sum(self.done.values()) + sum(self.last.values())


def utilisation_line(busy: float, cpus: float, wall: float) -> str:
    available = cpus * wall
    share = busy / available if available > 0 else 0.0
    return (
        f"cores {100 * share:.0f} % busy over the tuning loop: {busy:.0f} of {available:.0f} core-seconds "
        f"({cpus:g} CPUs x {wall:.0f} s)"
    )


def start_broker(name: str, cap: int | None):
    """The study's broker actor, named so that its trials find it (it ends with the driver)."""
    import ray

    broker = ray.remote(num_cpus=0)(CoreLedger).options(name=name, get_if_exists=True).remote(cap)
    ray.get(broker.extra.remote(""))  # started before the first trial asks
    return broker


def cores_callback(broker_name: str):
    """The driver's Tune callback: tells the broker whether any trial waits and which trials run. It
    holds the broker's name, not its handle: a resumed study restores the callback in a new Ray session,
    where the broker of the same name is a new actor."""
    from ray import tune

    class CoresCallback(tune.Callback):
        def __init__(self):
            self.said: Any = None

        def on_step_end(self, iteration, trials, **info):
            waiting = any(str(t.status) == "PENDING" for t in trials)
            running = sorted(t.trial_id for t in trials if str(t.status) == "RUNNING")
            if (waiting, running) != self.said:
                self.said = (waiting, running)
                _tell(broker_name, waiting, running)

    return CoresCallback()


def _tell(broker_name: str, waiting: bool, running: list[str]) -> None:
    import ray

    with contextlib.suppress(ValueError):  # no broker: the trials keep their own CPUs
        ray.get_actor(broker_name).update.remote(waiting, running)


class CoreShare:
    """A trial's side: ``threads()`` (polled between training steps) is the trial's base CPUs plus the
    share the broker grants and a holder actor has reserved on this node. The holder is asked for
    without waiting: the trial trains on while Ray places it, and takes the CPUs once it is placed."""

    def __init__(self, broker_name: str, trial: str, base: int, clock=time.monotonic):
        import ray

        self.base, self.trial, self.clock = base, trial, clock
        self.held, self.holder, self.next_poll = 0, None, 0.0
        self.asked: tuple[Any, Any, int, float] | None = None  # (holder, its ready ref, CPUs, since)
        try:
            self.broker = ray.get_actor(broker_name)
            self.node = ray.get_runtime_context().get_node_id()
            node_cpus = next(int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["NodeID"] == self.node)
            ray.get(self.broker.join.remote(trial, self.node, base, node_cpus), timeout=10)
        except Exception as err:  # no broker (a lost actor): the trial keeps its own CPUs
            self.broker = None
            _say(f"trial {trial}: no core broker ({type(err).__name__}: {err}); it keeps its {base} CPU(s)")

    def threads(self) -> int:
        if self.asked is not None:
            self._check_asked()
        if self.broker is not None and self.clock() >= self.next_poll:
            self.next_poll = self.clock() + POLL_S
            want = self._granted()
            if want != (self.asked[2] if self.asked else self.held):
                self._cancel_asked()
                self._release(say=want < self.held)
                if want > 0:
                    self._ask(want)
        return self.base + self.held

    def _granted(self) -> int:
        import ray

        try:
            return int(ray.get(self.broker.extra.remote(self.trial), timeout=5))
        except Exception as err:
            self.broker = None
            _say(f"trial {self.trial}: the core broker is gone ({type(err).__name__}); back to {self.base} CPU(s)")
            return 0

    def _ask(self, cpus: int) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(self.node, soft=False)
        holder = ray.remote(num_cpus=0)(_Holder).options(num_cpus=cpus, scheduling_strategy=strategy).remote()
        self.asked = (holder, holder.ready.remote(), cpus, self.clock())

    def _check_asked(self) -> None:
        import ray

        holder, ref, cpus, since = self.asked
        if ray.wait([ref], timeout=0)[0] and _placed(ref):
            self.asked, self.holder, self.held = None, holder, cpus
            _say(f"trial {self.trial}: {self.base + cpus} threads ({cpus} free CPU(s) of this node reserved for it)")
        elif self.clock() - since > PLACE_S:  # someone else holds them after all: no oversubscription
            self._cancel_asked()
            self.next_poll = self.clock() + BACKOFF_S
            _say(f"trial {self.trial}: {cpus} free CPU(s) could not be reserved within {PLACE_S:g} s; not taken")

    def _cancel_asked(self) -> None:
        if self.asked is not None:
            import ray

            ray.kill(self.asked[0])
            self.asked = None

    def _release(self, say: bool = True) -> None:
        if self.holder is not None:
            import ray

            ray.kill(self.holder)
            if say:
                _say(f"trial {self.trial}: back to {self.base} thread(s): a trial waits for CPUs")
        self.holder, self.held = None, 0

    def close(self) -> None:
        self._cancel_asked()
        self._release(say=False)


def _placed(ref) -> bool:
    """Whether a finished ``ready`` call says the holder lives (a dead holder holds nothing)."""
    import ray

    try:
        return bool(ray.get(ref, timeout=1))
    except Exception:
        return False


def _say(line: str) -> None:
    print(f"[paradis] {line}", file=sys.stderr, flush=True)


class _Holder:
    """Holds CPUs in Ray's books for a trial that uses them; does nothing else."""

    def ready(self) -> bool:
        return True


def core_use(results, since: float, cpus: float, wall: float) -> dict[str, float]:
    """Busy core-seconds (the trials' CPU seconds reported during this loop) over available ones."""
    meter = CoreMeter()
    for i, result in enumerate(results):
        frame = result.metrics_dataframe
        if frame is None or "cpu_seconds" not in frame or "timestamp" not in frame:
            continue
        for ts, cpu in zip(frame["timestamp"], frame["cpu_seconds"]):
            if ts >= since - 1 and cpu == cpu:  # NaN: a report without it
                meter.add(str(i), float(cpu))
    available = cpus * wall
    return {
        "core_seconds_busy": meter.busy,
        "core_seconds_available": available,
        "core_utilisation": meter.busy / available if available > 0 else 0.0,
        "cpus": cpus,
        "loop_seconds": wall,
    }

"""The device-pool benchmark (``benchmarks/deploy_pool.py``) with cores of its own for every actor.

    python -m benchmarks.deploy_pool_pinned [--cores-per-actor N] [any option of deploy_pool] [--json FILE]

``deploy_pool`` gives each of its four actors ``--threads`` torch threads and as many Ray CPUs, but the
operating system may still run two actors' threads on one core, and on a 2-core machine it must. This
wrapper runs the same benchmark with ``--threads N`` and, once the pool's actors have started, pins
every thread of actor i (each task of its process: ``os.sched_setaffinity``; threads started later
inherit it) to N cores of its own, and the driver and Ray's own processes to the cores left over.
``[1.0]`` on one actor is then timed against ``[0.5, 0.5]`` on two and ``[4x0.25]`` on four, each actor
on N cores that nothing else uses (goal: ``[0.5, 0.5]`` at most 0.6 of ``[1.0]``).

It needs 4 N + 1 cores: N defaults to (cores - 1) // 4, so 3 on a 16-core machine, with 4 cores left
for the driver and Ray. With fewer cores it still runs, says that the actors share cores, and its
figures then measure nothing more than ``deploy_pool`` itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks.deploy_pool as deploy_pool

ACTORS = 4  # deploy_pool starts DevicePool(4, ...): one actor per sub-network of [4x0.25]


def cores_allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


def pin(pid: int, cores: set[int]) -> int:
    """Pin every thread of process ``pid``; returns how many threads were pinned."""
    pinned = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
            pinned += 1
        except (ProcessLookupError, FileNotFoundError):  # the thread ended meanwhile
            pass
    return pinned


def layout(available: list[int], per_actor: int) -> tuple[list[set[int]], set[int], bool]:
    """Cores of each actor, cores of the driver, and whether every actor has cores of its own."""
    own = len(available) >= ACTORS * per_actor + 1
    if own:
        actors = [set(available[i * per_actor : (i + 1) * per_actor]) for i in range(ACTORS)]
        return actors, set(available[ACTORS * per_actor :]), True
    # not enough cores: wrap around (the actors share), and the driver may run anywhere
    actors = [{available[(i * per_actor + k) % len(available)] for k in range(per_actor)} for i in range(ACTORS)]
    return actors, set(available), False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    p.add_argument("--cores-per-actor", type=int, default=None, help="cores (and torch threads) of each actor")
    p.add_argument("-h", "--help", action="store_true")
    args, rest = p.parse_known_args(argv)
    if args.help:
        print(__doc__)
        return 0
    if "--threads" in rest:
        p.error("--threads is set from --cores-per-actor")
    if not hasattr(deploy_pool, "DevicePool"):
        print("deploy_pool_pinned: error: benchmarks.deploy_pool no longer imports DevicePool", file=sys.stderr)
        return 2
    available = sorted(os.sched_getaffinity(0))
    per_actor = args.cores_per_actor or max(1, (len(available) - 1) // ACTORS)
    actor_cores, driver_cores, own = layout(available, per_actor)
    print(
        f"deploy_pool_pinned: {len(available)} cores; {ACTORS} actors x {per_actor} core(s) "
        f"{[sorted(c) for c in actor_cores]}, driver and Ray on {sorted(driver_cores)}",
        flush=True,
    )
    if not own:
        print(
            f"deploy_pool_pinned: warning: {len(available)} cores are fewer than {ACTORS} x {per_actor} + 1: "
            "the actors share cores, so the figures below do not show parallel devices",
            flush=True,
        )
    # before ray.init: Ray's processes, and the actors until they are pinned, start on the driver's cores
    pin(os.getpid(), driver_cores)
    pinned_report: list[str] = []

    class PinnedPool(deploy_pool.DevicePool):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            for (name, info), cores in zip(self.info().items(), actor_cores):
                threads = pin(info["pid"], cores)
                pinned_report.append(
                    f"{name} (pid {info['pid']}, {info['threads']} torch threads): {threads} threads pinned to "
                    f"cores {sorted(cores)}; allowed now: {cores_allowed(info['pid'])}"
                )

    deploy_pool.DevicePool = PinnedPool
    rc = deploy_pool.main(["--threads", str(per_actor), *rest])
    print("\npinning:")
    for line in pinned_report:
        print(f"  {line}")
    print(f"  driver (pid {os.getpid()}): allowed {cores_allowed(os.getpid())}")
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""Time to accuracy of the main job: ``orchestration/run_study.py studies/quickstart.yaml`` run as a user
runs it (a fresh local Ray, MLflow in a sqlite file, the full test set), timed as a whole process. It
reports the wall time, the best trial's top-1 on ``[1.0]``, the cores' utilisation over the tuning loop
and the load average around the run. Goal: at least 88 % in at most 300 s on 2 cores.

``--baseline`` also runs the study with ``resources.share_free_cores=false`` (the trials keep one core
each); ``--before DIR`` also runs it from another checkout of the project (``git worktree add DIR REV``:
the code and the study file before a change, with this environment's packages). The variants take
turns, so that they are measured side by side on the same machine.

    python -m benchmarks.time_to_accuracy [--baseline] [--before DIR] [--repeats N] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Row, add_common_args, report

REPO = Path(__file__).resolve().parent.parent
GOAL_S, GOAL_TOP1 = 300.0, 0.88
NO_SHARING = ["resources.share_free_cores=false"]


def run_once(repo: Path, study: Path, sets: list[str], work: Path) -> dict:
    """One whole run of the study in its own store and Ray: what the user waits for, and what it gives."""
    home = Path(tempfile.mkdtemp(prefix="tta-", dir=work))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(PARADIS_HOME=str(home), RAY_TMPDIR=tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    if repo != REPO:  # that checkout's packages, not the ones installed from this one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    args = [sys.executable, str(repo / "orchestration" / "run_study.py"), str(study)]
    for s in sets:
        args += ["--set", s]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=repo, capture_output=True, text=True)
    wall = time.perf_counter() - start
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"time_to_accuracy: the study failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return {"wall_s": wall, "load_before": load, "load_after": os.getloadavg()[0], **read_store(home / "mlflow.db")}


def study_in(repo: Path, study: Path) -> Path:
    """The study file as that checkout has it (its recipe, not this one's), when it is one of ours."""
    study = study.resolve()
    return repo / study.relative_to(REPO) if study.is_relative_to(REPO) else study


def read_store(db: Path) -> dict:
    """The best trial's top-1 on ``[1.0]`` (and its name) and the study's core utilisation."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    study = next(r for r in runs if r.data.tags.get("paradis.role") == "study")
    trials = [r for r in runs if r.data.tags.get("paradis.role") == "trial"]
    best = max(trials, key=lambda r: r.data.metrics.get("acc/1.0", -1.0))
    return {
        "top1": best.data.metrics.get("acc/1.0", float("nan")),
        "best": best.info.run_name,
        "utilisation": study.data.metrics.get("core_utilisation", float("nan")),
        "loop_s": study.data.metrics.get("loop_seconds", float("nan")),
    }


def line(name: str, r: dict) -> str:
    verdict = "met" if r["top1"] >= GOAL_TOP1 and r["wall_s"] <= GOAL_S else "MISSED"
    return (
        f"{name:<12} wall {r['wall_s']:6.1f} s (tuning loop {r['loop_s']:5.1f} s)  best top-1 [1.0] "
        f"{100 * r['top1']:.2f} % ({r['best']})  cores {100 * r['utilisation']:.0f} % busy  "
        f"load {r['load_before']:.2f} -> {r['load_after']:.2f}  (goal >= {100 * GOAL_TOP1:g} % in <= {GOAL_S:g} s: "
        f"{verdict})"
    )


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "quickstart.yaml")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--baseline", action="store_true", help="also run without sharing free cores")
    parser.add_argument("--before", type=Path, metavar="DIR", help="also run the study from this checkout")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant, taking turns")
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:  # checks that it runs: the smoke-sized study
        args.sets = ["data.train_subset=512", "data.test_subset=256", "training.epochs=1", *args.sets]
    variants = {"this": (REPO, args.sets)}
    if args.baseline:
        variants["one-core"] = (REPO, args.sets + NO_SHARING)
    if args.before:
        variants["before"] = (args.before.resolve(), args.sets)
    rows, results = [], {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="paradis-tta-") as work:
        for _ in range(args.repeats):
            for name, (repo, sets) in variants.items():
                results[name].append(run_once(repo, study_in(repo, args.study), sets, Path(work)))
                print(line(name, results[name][-1]), flush=True)
    for name, runs in results.items():
        wall = sorted(r["wall_s"] for r in runs)[len(runs) // 2]
        top1 = min(r["top1"] for r in runs)
        # the ratio is the time's; the goal is met only with the accuracy too
        goal = 1.0 if top1 >= GOAL_TOP1 else None
        label = f"{name} ({100 * top1:.2f} %)"
        rows.append(
            Row("time_to_accuracy", args.study.stem, label, wall, "300 s", GOAL_S, goal=goal, extra={"runs": runs})
        )
    report(rows, args, "time to accuracy (ratio: wall time / 300 s)")
    if args.json:
        Path(args.json).with_suffix(".runs.json").write_text(json.dumps(results, indent=1))
    return rows


if __name__ == "__main__":
    main()

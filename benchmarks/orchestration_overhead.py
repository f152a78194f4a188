"""Per-trial orchestration overhead: a study of N short one-worker trials through the command a user
runs (``orchestration/run_study.py``: Ray Tune, MLflow, checkpoints), against the same trainings run
back to back in one plain Python process. Both are timed as whole processes, for two values of N; the
difference of the differences divided by the difference of N is the per-trial overhead, and what
remains is the fixed cost of starting Ray and MLflow. Goal: at most 2 s per one-worker trial.

    python -m benchmarks.orchestration_overhead [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import Row, add_common_args, report

REPO = Path(__file__).resolve().parent.parent

PLAIN = """
import sys
from orchestration.preflight import load_study
from orchestration.trials import grid_points, run_config_for
from paradis.engine import run_training
spec = load_study(sys.argv[1])
for params in grid_points(spec):
    run_training(run_config_for(spec, params), log=lambda line: None)
"""


def study_yaml(n: int, home: Path) -> Path:
    spec = {
        "name": f"overhead-{n}",
        "tracking": {"experiment": "paradis-benchmark-overhead"},
        "model": {"name": "mobilenet_v1_small"},
        "data": {"name": "synthetic", "synthetic_train": 256, "synthetic_test": 64},
        "training": {
            "method": "paradis",
            "switches": ["[1.0]", "[0.5, 0.5]"],
            "epochs": 2,
            "batch_size": 32,
            "max_steps_per_epoch": 2,
        },
        "evaluation": {"switches": ["[1.0]", "[0.5, 0.5]"], "calibration_batches": 1},
        "search": {"kind": "grid", "variants": {f"seed{i}": {"training.seed": i} for i in range(n)}},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "max_concurrent_trials": 1},
    }
    path = home / f"overhead-{n}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def run(args: argparse.Namespace) -> list[Row]:
    ns = (1, 3) if args.quick else (2, 8)
    study, plain = {}, {}
    with tempfile.TemporaryDirectory(prefix="paradis-overhead-") as d:
        home = Path(d)
        env = {**os.environ, "PARADIS_HOME": str(home), "RAY_ADDRESS": "", "PYTHONPATH": str(REPO)}
        env.pop("RAY_ADDRESS")
        for n in ns:
            spec = study_yaml(n, home)
            plain[n] = timed([sys.executable, "-c", PLAIN, str(spec)], env)
            study[n] = timed([sys.executable, "orchestration/run_study.py", str(spec)], env)
    lo, hi = ns
    per_trial = ((study[hi] - plain[hi]) - (study[lo] - plain[lo])) / (hi - lo)
    fixed = (study[lo] - plain[lo]) - lo * per_trial
    rows = [
        Row("orchestration", f"study of {n} trials", "run_study.py", study[n], "one plain process", plain[n])
        for n in ns
    ]
    extra = {"fixed_overhead_s": fixed}
    rows.append(Row("orchestration", "per one-worker trial", "overhead", per_trial, "goal 2 s", 2.0, 1.0, extra=extra))
    print(f"fixed start-up of the study (Ray, MLflow, Tune set-up): {fixed:.1f} s; per trial {per_trial:.2f} s")
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    rows = run(args)
    report(rows, args, "orchestration overhead")
    return rows


if __name__ == "__main__":
    main()

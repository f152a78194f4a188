#!/usr/bin/env bash
# GPU check (issue 18): everything that needs a GPU, in one call of the device tool, under 8 minutes.
#
#   here, once (PyPI reachable):  bash benchmarks/gpu_wheels.sh       # .whl/: ray, pydantic, optuna, ...
#   through the device tool:      run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=480)
#   rehearsal on a CPU machine:   OUT=$(mktemp -d) GPU_CHECK_REHEARSAL=1 bash benchmarks/gpu_check.sh
#
# What the machine must have: an NVIDIA GPU (nvidia-smi), coreutils' timeout, and a python3 with a CUDA
# build of torch (the GPU image's python3: Python 3.12 and torch 2.11 as last seen; any torch >= 2.4) and
# torchvision, numpy, pyyaml, scikit-image and pytest; nothing is fetched for those. What that image
# lacks (ray, pydantic, optuna and their missing dependencies: benchmarks/gpu_requirements.txt) is
# installed without compiling into an overlay (pip --target $SITE, first on PYTHONPATH, which Ray's
# workers inherit) from the wheels carried in .whl/ (CPython 3.12); without them it tries the package
# index (60 s at most: the GPU machine reaches none), then goes on with what is there, and the checks
# that need what is missing fail or skip, each saying why. Without a GPU it stops within seconds with one
# line and exit status 2.
#
# Phases, each under a hard time limit (`timeout`), all within GPU_CHECK_BUDGET_S (default 450 s):
#   gate (seconds) -> setup (90 s) -> the cuda tests (200 s; 150 s a test) -> benchmarks on CUDA under
#   bf16 (150 s) -> the device pool, 3 CPU cores of its own per actor (90 s) -> switch_execution and
#   training_step on CUDA in fp32 (60 s) -> the device pool with 1 core per actor (60 s). A phase that
#   would get under 20 s is skipped and says so.
#
# Writes under $OUT (8 files, all in $OUT itself):
#   summary.txt     the verdict, each phase's status and seconds, versions, every test that did not pass,
#                   the benchmark ratios (written phase by phase: a run cut short keeps what it did)
#   log.txt         everything printed
#   tests.txt       each test's outcome as it happens, with the figures it measured ("measured:" lines)
#   junit.xml       pytest's report
#   nvidia-smi.txt  nvidia-smi before and after (driver, clocks, memory, power)
#   bench.json      rows of benchmarks.run on CUDA under bf16, then the device-pool rows (CPU)
#   bench_fp32.json rows of switch_execution and training_step on CUDA in float32 (TF32 as PyTorch's default)
#   deploy_pool.txt the device-pool tables and how each actor was pinned
# Exit status: 0 every check passed; 1 a test failed, errored or was skipped, or a phase failed; 2 no GPU;
# 3 no usable python3 with torch.
#
# Settings: OUT (default /tmp/gpu-check-out); GPU_CHECK_PYTHON (default python3; .venv/bin/python when
# rehearsing); GPU_CHECK_SITE (default /tmp/gpu-check-site); GPU_CHECK_BUDGET_S (450); GPU_CHECK_PHASES
# (default "tests bench deploy fp32 deploy1"; say "tests" with GPU_CHECK_PYTEST_K=ray for a short rerun
# of a part); GPU_CHECK_PYTEST_K (a pytest -k expression); GPU_CHECK_REHEARSAL=1: everything on the CPU
# (the cuda tests with PARADIS_CUDA_TESTS_ON_CPU=1 and, unless GPU_CHECK_PYTEST_K says otherwise, only
# the small models; the benchmarks with --quick): it checks this script, not CUDA.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 3
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-450}
RESERVE=15 # seconds kept for the summary
REHEARSAL=${GPU_CHECK_REHEARSAL:-0}
OUT=${OUT:-${TMPDIR:-/tmp}/gpu-check-out}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

elapsed() { echo $(($(date +%s) - START)); }
say() { echo "$*" >>"$SUMMARY"; }
die() { # one clear line, on stdout and in summary.txt
    echo "gpu_check: FAILED: $2" | tee -a "$SUMMARY"
    exit "$1"
}

# --- gate: a GPU, and a python3 whose torch sees it (seconds where there is none) ------------------------
if [ "$REHEARSAL" = 1 ]; then
    PY=${GPU_CHECK_PYTHON:-$REPO/.venv/bin/python}
    [ -x "$PY" ] || PY=python3
else
    PY=${GPU_CHECK_PYTHON:-python3}
    command -v nvidia-smi >/dev/null 2>&1 ||
        die 2 "no GPU here: nvidia-smi is not on the PATH (run this on a GPU machine; GPU_CHECK_REHEARSAL=1 rehearses it on the CPU)"
fi
command -v timeout >/dev/null 2>&1 || die 3 "coreutils' timeout is missing: the phases could not be held to their limits"
if [ "$REHEARSAL" != 1 ]; then
    timeout 30 nvidia-smi -L 2>/dev/null | grep -q '^GPU ' ||
        die 2 "no GPU here: nvidia-smi lists none ($(timeout 10 nvidia-smi -L 2>&1 | head -1))"
fi
command -v "$PY" >/dev/null 2>&1 || die 3 "no python: $PY not found (set GPU_CHECK_PYTHON)"
VERSIONS=$(
    timeout 90 "$PY" - "$REHEARSAL" 2>&1 <<'PYEOF'
import sys
import torch
rehearsal = sys.argv[1] == "1"
cuda = torch.cuda.is_available()
gpu = torch.cuda.get_device_name(0) if cuda else "no GPU"
cudnn = torch.backends.cudnn.version() if cuda else "-"
print(f"python {sys.version.split()[0]} ({sys.executable}); torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {cudnn}; {torch.cuda.device_count()} GPU(s): {gpu}")
sys.exit(0 if cuda or rehearsal else 4)
PYEOF
)
rc=$?
[ $rc = 4 ] && die 2 "no GPU for torch: torch.cuda.is_available() is False ($VERSIONS)"
[ $rc = 0 ] || die 3 "$PY cannot import torch (exit $rc): $(echo "$VERSIONS" | tail -1)"

# from here on everything printed also goes to log.txt
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE_PID=$!
trap 'exec 1>&- 2>&-; wait "$TEE_PID" 2>/dev/null' EXIT # log.txt complete before the files go back
PHASES=" ${GPU_CHECK_PHASES:-tests bench deploy fp32 deploy1} "
want() { [[ "$PHASES" == *" $1 "* ]]; }
mode=$([ "$REHEARSAL" = 1 ] && echo " -- REHEARSAL on the CPU: no CUDA was checked")
echo "gpu_check: $(date -u +%FT%TZ), $(nproc) cores, repo $REPO, budget ${BUDGET} s$mode"
echo "gpu_check: $VERSIONS"
say "GPU check (benchmarks/gpu_check.sh), $(date -u +%FT%TZ)$mode"
say "machine: $(uname -m), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory"
say "$VERSIONS"
if command -v nvidia-smi >/dev/null 2>&1; then
    {
        echo "== before, $(date -u +%T)"
        timeout 30 nvidia-smi
        timeout 30 nvidia-smi -q -d CLOCK,MEMORY,POWER,PERFORMANCE
    } >"$OUT/nvidia-smi.txt" 2>&1
    say "GPU: $(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
fi

# phase NAME CAP [--tee FILE] COMMAND...: COMMAND under min(CAP, what the budget has left) seconds, its
# output also appended to FILE; sets PHASE_RC and PHASE_TOOK and writes the phase's line in summary.txt
PHASE_RC=0
PHASE_TOOK=0
phase() {
    local name=$1 cap=$2 tee_to=/dev/null
    shift 2
    if [ "$1" = --tee ]; then
        tee_to=$2
        shift 2
    fi
    local left=$((BUDGET - RESERVE - $(elapsed)))
    local limit=$((cap < left ? cap : left))
    PHASE_TOOK=0
    if [ "$limit" -lt 20 ]; then
        say "$(printf '%-20s' "$name") SKIPPED: ${left} s of the budget left"
        echo "gpu_check: $name skipped: ${left} s of the budget left"
        PHASE_RC=124
        return
    fi
    echo
    echo "=== gpu_check: $name (limit ${limit} s, at $(elapsed) s) ==="
    local t0
    t0=$(date +%s)
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$tee_to"
    PHASE_RC=${PIPESTATUS[0]}
    PHASE_TOOK=$(($(date +%s) - t0))
    local status=ok
    [ "$PHASE_RC" = 0 ] || status="FAILED (exit $PHASE_RC)"
    if [ "$PHASE_RC" = 124 ] || [ "$PHASE_RC" = 137 ]; then status="TIMED OUT after ${limit} s"; fi
    say "$(printf '%-20s' "$name") $status in ${PHASE_TOOK} s"
    echo "=== gpu_check: $name: $status in ${PHASE_TOOK} s ==="
}

# --- setup: what the image lacks, from the carried wheels (or the index), into an overlay ---------------
SITE=${GPU_CHECK_SITE:-/tmp/gpu-check-site}
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PY REPO SITE
missing() {
    timeout 120 "$PY" - <<'PYEOF'
import importlib
need = ["torch", "torchvision", "numpy", "yaml", "skimage", "pytest", "pydantic", "ray", "ray.train.torch", "optuna",
        "paradis.config", "paradis.cli", "orchestration.trainable", "orchestration.deploy"]
gone = []
for name in need:
    try:
        importlib.import_module(name)
    except Exception as err:  # any failure to import is a missing piece
        gone.append(f"{name} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
print("; ".join(gone))
PYEOF
}
setup() {
    local gone
    gone=$(missing)
    if [ -z "$gone" ]; then
        echo "setup: everything imports; nothing to install"
        return 0
    fi
    echo "setup: missing: $gone"
    mkdir -p "$SITE"
    if compgen -G "$REPO/.whl/*.whl" >/dev/null; then
        echo "setup: installing $(ls "$REPO"/.whl/*.whl | wc -l) carried wheels from .whl/ into $SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$REPO"/.whl/*.whl || echo "setup: pip install of the carried wheels failed"
    else
        echo "setup: no .whl/ carried (bash benchmarks/gpu_wheels.sh makes it); trying the package index, 60 s at most"
        timeout 60 "$PY" -m pip install -q --no-deps --no-compile --no-cache-dir --timeout 5 --retries 0 \
            --target "$SITE" -r "$REPO/benchmarks/gpu_requirements.txt" || echo "setup: the package index is out of reach"
    fi
    gone=$(missing)
    if [ -n "$gone" ]; then
        echo "setup: still missing: $gone"
        return 1
    fi
    echo "setup: everything imports"
}
export -f missing setup
phase setup 90 bash -c setup
SETUP_RC=$PHASE_RC
echo "gpu_check: setup took ${PHASE_TOOK} s"
say "setup took ${PHASE_TOOK} s$(grep -m1 -o 'still missing: .*' "$OUT/log.txt" | sed 's/^/; /')"

# --- the cuda tests -------------------------------------------------------------------------------------
: >"$OUT/tests.txt"
TESTS_RC=0
if want tests; then
    pytest_args=(-m pytest tests/cuda -m cuda -q -p no:cacheprovider -o addopts= -ra --durations=15
        --junitxml="$OUT/junit.xml")
    "$PY" -c "import pytest_timeout" 2>/dev/null && pytest_args+=(--timeout=150)
    K=${GPU_CHECK_PYTEST_K:-}
    [ "$REHEARSAL" = 1 ] && K=${K:-"mobilenet_v1_small or wdsr_small or ddp or loader or ray or cli"}
    [ -n "$K" ] && pytest_args+=(-k "$K")
    ON_CPU=$([ "$REHEARSAL" = 1 ] && echo 1 || echo 0)
    phase "cuda tests" 200 env GPU_CHECK_RESULTS="$OUT/tests.txt" GPU_CHECK_METRICS="$OUT/tests.txt" \
        PARADIS_CUDA_TESTS_ON_CPU="$ON_CPU" "$PY" "${pytest_args[@]}"
    TESTS_RC=$PHASE_RC
fi
passed=$(grep -c '^PASSED' "$OUT/tests.txt")
failed=$(grep -c -e '^FAILED' -e '^ERROR' "$OUT/tests.txt")
skipped=$(grep -c '^SKIPPED' "$OUT/tests.txt")
if want tests; then
    say "tests: $passed passed, $failed failed or errored, $skipped skipped (tests.txt: each with what it measured)"
    grep -e '^FAILED' -e '^ERROR' -e '^SKIPPED' "$OUT/tests.txt" | sed 's/^/  /' >>"$SUMMARY"
    [ $((passed + failed + skipped)) = 0 ] && say "  no test reported: collection failed? (log.txt)"
fi

# --- benchmarks on CUDA, and the device pool on CPU cores of its own ----------------------------------
# benchmarks.run without deploy_pool (4 GPUs, no bf16) and orchestration_overhead (Ray Tune and MLflow:
# a CPU figure); the device pool runs on the CPU instead, where 16 cores give each actor cores of its own
BENCH_DEV=cuda
BENCH_EXTRA=()
if [ "$REHEARSAL" = 1 ]; then
    BENCH_DEV=cpu
    BENCH_EXTRA=(--quick)
fi
BENCH_RC=0
DEPLOY_RC=0
if want bench; then
    phase "benchmarks bf16" 150 "$PY" -m benchmarks.run switch_execution training_step calibration data_loading \
        --device "$BENCH_DEV" --bf16 ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"} --json "$OUT/bench.json"
    BENCH_RC=$PHASE_RC
fi
if want deploy; then
    phase "device pool" 90 --tee "$OUT/deploy_pool.txt" "$PY" -m benchmarks.deploy_pool_pinned \
        ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"} --json "$OUT/bench.json"
    DEPLOY_RC=$PHASE_RC
fi
if want fp32; then
    phase "benchmarks fp32" 60 "$PY" -m benchmarks.run switch_execution training_step \
        --device "$BENCH_DEV" ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"} --json "$OUT/bench_fp32.json"
    [ "$PHASE_RC" = 124 ] || [ "$PHASE_RC" = 0 ] || BENCH_RC=$PHASE_RC # extra: a time-out does not count
fi
if want deploy1 && [ "$(nproc)" -ge 5 ]; then
    phase "device pool 1 core" 60 --tee "$OUT/deploy_pool.txt" "$PY" -m benchmarks.deploy_pool_pinned \
        --cores-per-actor 1 ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"} --json "$OUT/bench.json"
fi
grep -E '^(deploy_pool_pinned: [0-9]+ cores|ratio:)' "$OUT/deploy_pool.txt" 2>/dev/null |
    sed 's/^/  device pool: /' >>"$SUMMARY"

# --- summary ------------------------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null 2>&1; then
    {
        echo
        echo "== after, $(date -u +%T)"
        timeout 20 nvidia-smi
    } >>"$OUT/nvidia-smi.txt" 2>&1
fi
timeout 30 "$PY" - "$OUT/bench.json" "$OUT/bench_fp32.json" >>"$SUMMARY" 2>&1 <<'PYEOF'
import json, os, sys
for path in sys.argv[1:]:
    if not os.path.exists(path):
        print(f"{os.path.basename(path)}: none written")
        continue
    rows = json.load(open(path))
    print(f"{os.path.basename(path)}: {len(rows)} rows (project time / anchor time; lower is better)")
    for r in rows:
        goal = "" if r.get("goal") is None else f"  goal <= {r['goal']:g}: {'met' if r['ratio'] <= r['goal'] else 'MISSED'}"
        print(f"  {r['benchmark']:<17} {r['case'][:46]:<46} {r['project'][:24]:<24} {r['project_s'] * 1e3:9.2f} ms"
              f" vs {r['anchor'][:22]:<22} {r['anchor_s'] * 1e3:9.2f} ms  ratio {r['ratio']:6.3f}{goal}")
PYEOF
verdict=0
if want tests && { [ "$TESTS_RC" != 0 ] || [ "$failed" != 0 ] || [ "$passed" = 0 ]; }; then verdict=1; fi
[ "$skipped" = 0 ] || [ "$REHEARSAL" = 1 ] || verdict=1 # on a GPU machine a skip means something was missing
[ "$BENCH_RC" = 0 ] && [ "$DEPLOY_RC" = 0 ] && [ "$SETUP_RC" = 0 ] || verdict=1
line="gpu_check: $([ $verdict = 0 ] && echo PASSED || echo FAILED) in $(elapsed) s: tests $passed passed, $failed failed, $skipped skipped; exit status of setup $SETUP_RC, tests $TESTS_RC, benchmarks $BENCH_RC, device pool $DEPLOY_RC"
{
    echo "$line"
    cat "$SUMMARY"
} >"$SUMMARY.tmp" && mv "$SUMMARY.tmp" "$SUMMARY"
echo
cat "$SUMMARY"
exit $verdict

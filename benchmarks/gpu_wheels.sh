#!/usr/bin/env bash
# Fetch, here (where PyPI is reachable), the wheels that benchmarks/gpu_check.sh needs on the GPU machine
# and that its image lacks, for that machine's Python (CPython 3.12, x86-64 manylinux):
#
#     bash benchmarks/gpu_wheels.sh            # -> .whl/ in the repository root (git-ignored locally)
#     bash benchmarks/gpu_wheels.sh DIR        # -> DIR
#
# The GPU image (see docs/GPU_CHECK.md) has torch, torchvision, numpy, pyyaml, scikit-image, pandas,
# pyarrow, pytest and the rest of ray's plain dependencies, but no pydantic (paradis.config needs it), no
# ray and no optuna (orchestration.trainable imports orchestration.pareco, which imports optuna). Those
# and their missing dependencies, benchmarks/gpu_requirements.txt, are fetched here with --no-deps.
# Ray's wheel (76 MiB) alone is over the device tool's 64 MiB a call, so its Java jars (ray/jars, 31 MiB,
# for Java workers only; Ray starts without them) and the dashboard's JavaScript source maps are taken
# out of it and the wheel is rewritten, RECORD included. The result, about 52 MiB, travels with
# `carry: [".whl"]`; it takes a few seconds here.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO/.whl}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY=python3

# one pinned version of each, listed in benchmarks/gpu_requirements.txt (gpu_check.sh installs the same)
mapfile -t WHEELS < <(grep -v -e '^#' -e '^[[:space:]]*$' "$REPO/benchmarks/gpu_requirements.txt")

mkdir -p "$DEST"
if [ "$DEST" = "$REPO/.whl" ] && [ -d "$REPO/.git" ] && ! grep -qx '/.whl/' "$REPO/.git/info/exclude" 2>/dev/null; then
    echo '/.whl/' >>"$REPO/.git/info/exclude"  # local ignore only: the wheels travel by `carry`, never by git
    echo "added /.whl/ to .git/info/exclude"
fi
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$DEST" "${WHEELS[@]}"

# one version of each: an older download of another version would stop the whole install there
"$PY" - "$DEST" "${WHEELS[@]}" <<'EOF'
import re, sys
from pathlib import Path
dest, wanted = Path(sys.argv[1]), sys.argv[2:]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
pins = {norm(w.split("==")[0]): w.split("==")[1] for w in wanted}
for whl in sorted(dest.glob("*.whl")):
    name, version = whl.name.split("-")[:2]
    if pins.get(norm(name)) != version:
        print(f"removing {whl.name} (not in the list)")
        whl.unlink()
EOF

# ray without its Java jars, rewritten as a valid wheel (RECORD lists exactly what is in it)
"$PY" - "$DEST" <<'EOF'
import sys, zipfile
from pathlib import Path
dest = Path(sys.argv[1])
(ray,) = dest.glob("ray-*.whl")
with zipfile.ZipFile(ray) as z:
    names = z.namelist()
    if not any(n.startswith("ray/jars/") for n in names):
        print(f"{ray.name}: already without ray/jars")
        sys.exit(0)
    tmp = ray.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            if info.filename.startswith("ray/jars/") or info.filename.endswith(".js.map"):
                continue
            data = z.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                keep = [l for l in lines if not (l.startswith("ray/jars/") or l.split(",")[0].endswith(".js.map"))]
                data = ("\n".join(keep) + "\n").encode()
            out.writestr(info, data)
tmp.replace(ray)
print(f"{ray.name}: ray/jars and the dashboard's source maps removed")
EOF

total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
ls -l "$DEST"
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $((total / 1048576)) MiB in $DEST (the device tool carries at most 64 MiB a call, the working tree included)"
if [ "$total" -gt $((60 * 1048576)) ]; then
    echo "error: over 60 MiB: the working tree would not fit beside them" >&2
    exit 1
fi

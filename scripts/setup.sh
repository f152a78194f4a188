#!/usr/bin/env bash
# Sets up this checkout: Debian's Fashion-MNIST (when run as root on Debian) and a virtual
# environment in .venv with the project, its orchestration extras and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -d /usr/share/datasets/fashion-mnist ]] && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "setup: installing Debian's dataset-fashion-mnist"
    (apt-get update -q && apt-get install -y -q --no-install-recommends dataset-fashion-mnist) >/dev/null \
        || echo "setup: could not install dataset-fashion-mnist; pass a data root instead" >&2
fi

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt -e '.[orchestration,dev]'
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"

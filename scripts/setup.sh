#!/usr/bin/env bash
# Sets up this checkout: Debian's Fashion-MNIST (when run as root on Debian) and a virtual
# environment in .venv with the project, its orchestration and edge-export extras and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Fashion-MNIST (the default data set); PostgreSQL and iproute2 for the multi-host
# cluster test (tests/deploy), which runs the compose topology in network namespaces.
packages=()
[[ -d /usr/share/datasets/fashion-mnist ]] || packages+=(dataset-fashion-mnist)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || packages+=(postgresql)
command -v ip >/dev/null || packages+=(iproute2)
if ((${#packages[@]})) && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "setup: installing Debian packages: ${packages[*]}"
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${packages[@]}") >/dev/null || echo "setup: could not install ${packages[*]}" >&2
fi

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt -e '.[orchestration,dev,edge]'
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"

#!/usr/bin/env bash
# Sets up this checkout: Debian's Fashion-MNIST (when run as root on Debian) and a virtual environment
# in .venv with the project, its orchestration and edge-export extras and the test tools, every package
# at the version locked in constraints.txt (written by scripts/lock.sh from a green run).
#   bash scripts/setup.sh            .venv from the lock
#   bash scripts/setup.sh --latest   .venv-latest: the newest releases pyproject.toml's ranges allow
#                                    (only pins.txt held), for scripts/canary.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
lock=constraints.txt
upgrade=()
case "${1:-}" in
    "") ;;
    --latest) venv=.venv-latest lock=pins.txt upgrade=(--upgrade --upgrade-strategy eager) ;;
    *) echo "setup: error: unknown option ${1} (known: --latest)" >&2; exit 2 ;;
esac

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
[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
locked_python=$(sed -n 's/^# python: *//p' constraints.txt)
this_python=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ $venv == .venv && -n $locked_python && $this_python != "$locked_python" ]]; then
    echo "setup: note: the lock was tested on Python $locked_python; this is Python $this_python" >&2
fi
"$venv/bin/python" -m pip install -q -c "$lock" "${upgrade[@]}" pip >/dev/null
"$venv/bin/python" -m pip install -q -c "$lock" "${upgrade[@]}" -e '.[orchestration,dev,edge]'
echo "setup: ready in $venv ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"

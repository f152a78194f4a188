#!/usr/bin/env bash
# The canary for new releases: builds .venv-latest with the newest releases pyproject.toml's ranges allow
# (scripts/setup.sh --latest), prints which packages differ from the lock, runs the suite there, and
# reruns what failed with the lock (.venv) to tell the tests the new releases break from those that fail
# either way. It does not gate CI: the lock does. Exit 0 when the new releases break nothing.
#   bash scripts/canary.sh                 the fast suite (-m "not slow")
#   bash scripts/canary.sh --full          the whole suite
#   bash scripts/canary.sh -- PYTEST_ARGS  these tests only
set -euo pipefail
cd "$(dirname "$0")/.."
selection=(-m "not slow")
case "${1:-}" in
    "") ;;
    --full) selection=() ;;
    --) shift; selection=("$@") ;;
    *) echo "canary: error: unknown option ${1} (known: --full, -- PYTEST_ARGS)" >&2; exit 2 ;;
esac

bash scripts/setup.sh --latest
[[ -x .venv/bin/python ]] || bash scripts/setup.sh
echo "canary: packages that differ from the lock (constraints.txt -> newest):"
.venv/bin/python scripts/lockfile.py diff --python .venv-latest/bin/python | sed 's/^/  /'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv-latest/bin/python -m pytest -q -p no:cacheprovider --junitxml="$work/latest.xml" "${selection[@]}" \
    >"$work/latest.log" 2>&1 || true
tail -1 "$work/latest.log" | sed 's/^/canary: with the newest releases: /'
mapfile -t failed < <(.venv/bin/python scripts/lockfile.py failures "$work/latest.xml" | sed "/^$/d")
if ((${#failed[@]} == 0)); then
    echo "canary: the newest releases break no test"
    exit 0
fi
.venv/bin/python -m pytest -q -p no:cacheprovider --junitxml="$work/lock.xml" "${failed[@]}" >"$work/lock.log" 2>&1 || true
mapfile -t also < <(.venv/bin/python scripts/lockfile.py failures "$work/lock.xml" | sed "/^$/d")
broken=0
echo "canary: tests the newest releases break (they pass with the lock):"
for t in "${failed[@]}"; do
    if [[ " ${also[*]} " != *" $t "* ]]; then echo "  $t"; broken=$((broken + 1)); fi
done
if ((${#also[@]})); then
    echo "canary: tests that fail with the lock too (not the releases' doing):"
    printf '  %s\n' "${also[@]}"
fi
echo "canary: $broken test(s) broken by the newest releases; the failures' text: .venv-latest run below"
grep -E '^(FAILED|ERROR) ' "$work/latest.log" | sed 's/^/  /' || true
((broken == 0))

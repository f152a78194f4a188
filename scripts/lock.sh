#!/usr/bin/env bash
# Writes constraints.txt, the lock of tested versions: resolves pyproject.toml's ranges (only pins.txt
# held) in a new .venv-lock, runs the suite there, and locks every installed package only if it passed;
# then the README's table of tested versions follows the lock. Upgrading a pin is this script's run,
# committed as a change of its own after scripts/canary.sh has shown what moved.
#   bash scripts/lock.sh          the fast suite (-m "not slow")
#   bash scripts/lock.sh --full   the whole suite
set -euo pipefail
cd "$(dirname "$0")/.."
marker=(-m "not slow") suite="fast suite"
case "${1:-}" in
    "") ;;
    --full) marker=() suite="whole suite" ;;
    *) echo "lock: error: unknown option ${1} (known: --full)" >&2; exit 2 ;;
esac

rm -rf .venv-lock
"${PYTHON:-python3}" -m venv .venv-lock
.venv-lock/bin/python -m pip install -q -c pins.txt --upgrade pip >/dev/null
.venv-lock/bin/python -m pip install -q -c pins.txt -e '.[orchestration,dev,edge]'
log=$(mktemp)
# the tests that read the lock itself run once the lock is written
lock_tests=(tests/test_dependencies.py::test_the_lock_pins_every_declared_dependency
    tests/test_lockfile.py::test_the_readme_names_the_locked_versions)
if ! .venv-lock/bin/python -m pytest -q -p no:cacheprovider "${marker[@]}" \
    --deselect "${lock_tests[0]}" --deselect "${lock_tests[1]}" 2>&1 | tee "$log"; then
    echo "lock: the $suite failed in .venv-lock; constraints.txt left as it was" >&2
    exit 1
fi
summary=$(grep -E '^[0-9]+ passed' "$log" | tail -1 | sed 's/ in [0-9.]*s.*//')
cp constraints.txt "$log.previous"
.venv-lock/bin/python scripts/lockfile.py write --python .venv-lock/bin/python --tested "$suite: $summary"
if ! .venv-lock/bin/python -m pytest -q -p no:cacheprovider "${lock_tests[@]}"; then
    cp "$log.previous" constraints.txt
    .venv-lock/bin/python scripts/lockfile.py readme
    echo "lock: the new lock fails its own tests; constraints.txt left as it was" >&2
    exit 1
fi
rm -f "$log" "$log.previous"
echo "lock: constraints.txt and README.md updated; .venv-lock holds the locked environment"

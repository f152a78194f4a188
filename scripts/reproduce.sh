#!/usr/bin/env bash
# Run the studies the paper's claims read (ablation, baselines, scaling_8_switches, for_free) with 3
# seeds on the full Fashion-MNIST test set, then write docs/RESULTS.md from their runs (about 5 hours on
# 2 CPU cores; each study's time is in the report); a study interrupted resumes with
# `run_study.py studies/NAME.yaml --resume`.
#   bash scripts/reproduce.sh                      # the claims' studies, store in $PARADIS_HOME/mlflow.db
#   bash scripts/reproduce.sh quickstart pareco    # others as well (the report reads all nine)
# PARADIS_HOME (default ~/paradis) holds the MLflow store and Ray's results; REPEATS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
HOME_DIR=${PARADIS_HOME:-$HOME/paradis}
export PARADIS_HOME=$HOME_DIR
REPEATS=${REPEATS:-3}
STUDIES=("$@")
if [ ${#STUDIES[@]} -eq 0 ]; then
  STUDIES=(ablation baselines scaling_8_switches for_free)
fi
mkdir -p "$HOME_DIR"
for study in "${STUDIES[@]}"; do
  start=$(date +%s)
  echo "[reproduce] $study: repeats=$REPEATS, full test set"
  "$PY" orchestration/run_study.py "studies/$study.yaml" --set "repeats=$REPEATS" --set data.test_subset=null \
    > "$HOME_DIR/reproduce-$study.log" 2>&1 || echo "[reproduce] $study failed: see $HOME_DIR/reproduce-$study.log"
  echo "[reproduce] $study: $(( $(date +%s) - start )) s"
done
# each study's results to docs/results/<study>.json, and the report from those files alone (a test
# holds docs/RESULTS.md to them)
"$PY" -m orchestration.report export --tracking-uri "sqlite:///$HOME_DIR/mlflow.db"
"$PY" -m orchestration.report results --from docs/results

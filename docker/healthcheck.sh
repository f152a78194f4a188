#!/usr/bin/env bash
# Healthy when this node's Ray is up and reaches the head's GCS.
set -eu
exec ray health-check --address "${RAY_HEAD_ADDRESS:-127.0.0.1:6379}" >/dev/null 2>&1

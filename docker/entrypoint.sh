#!/usr/bin/env bash
# Ray nodes: read the MLflow password from its secret file (never from the image), then run the command.
set -euo pipefail
secrets=${SECRETS_DIR:-/run/secrets}
if [[ -f $secrets/mlflow_password ]]; then
    MLFLOW_TRACKING_PASSWORD="$(tr -d '\n' < "$secrets/mlflow_password")"
    export MLFLOW_TRACKING_PASSWORD
fi
token=${RAY_AUTH_TOKEN_PATH:-$secrets/ray_token}
if [[ ! -s $token ]]; then
    echo "entrypoint: the Ray token secret $token is missing or empty" >&2
    exit 1
fi
mkdir -p "${PARADIS_HOME:-/shared/paradis}"
exec "$@"

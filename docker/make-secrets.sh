#!/usr/bin/env bash
# Writes random secrets into docker/secrets/ (once; existing files are kept).
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
for name in ray_token postgres_password mlflow_password mlflow_flask_secret; do
    [[ -s secrets/$name ]] || python3 -c 'import secrets; print(secrets.token_hex(32))' > "secrets/$name"
done
echo "secrets in $(pwd)/secrets: ray_token, postgres_password, mlflow_password, mlflow_flask_secret"

#!/usr/bin/env bash
# Writes random secrets into docker/secrets/ (once; existing files are kept), every one 0600 in a 0700
# folder, also those written before (a token from `ray get-auth-token --generate` is 0644). No trailing
# newline: `kubectl create secret --from-file` keeps the file as it is, and an environment variable from it
# must hold the password alone.
#   ray_token               every Ray node and the job client
#   mlflow_writer_password  the Ray nodes' MLflow account (non-admin, owns the study experiments)
#   postgres_password, mlflow_password (MLflow admin), mlflow_flask_secret: the MLflow host only
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 700 secrets
names=(ray_token mlflow_writer_password postgres_password mlflow_password mlflow_flask_secret)
for name in "${names[@]}"; do
    [[ -s secrets/$name ]] || python3 -c 'import secrets; print(secrets.token_hex(32), end="")' > "secrets/$name"
    chmod 600 "secrets/$name"
done
echo "secrets (0600) in $(pwd)/secrets: ${names[*]}"

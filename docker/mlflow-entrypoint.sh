#!/usr/bin/env bash
# MLflow server: basic authentication on, PostgreSQL as the backend store; passwords and keys come from
# secret files (never from the image or the compose file).
set -euo pipefail
read_secret() { tr -d '\n' < "$1"; }
secrets=${SECRETS_DIR:-/run/secrets}
pg_password="$(read_secret "$secrets/postgres_password")"
MLFLOW_AUTH_ADMIN_PASSWORD="$(read_secret "$secrets/mlflow_password")"
MLFLOW_FLASK_SERVER_SECRET_KEY="$(read_secret "$secrets/mlflow_flask_secret")"
export MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY
backend="postgresql+psycopg://${POSTGRES_USER}:${pg_password}@${POSTGRES_HOST:-postgres}:${POSTGRES_PORT:-5432}/${POSTGRES_DB}"
config="$(mktemp -d)/basic_auth.ini"
cat > "$config" <<INI
[mlflow]
default_permission = READ
database_uri = ${backend}
admin_username = ${MLFLOW_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$config"
# Host headers the server answers (DNS-rebinding protection): the compose service name and loopback.
allowed=${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:5000,localhost,localhost:5000,127.0.0.1,127.0.0.1:5000}
exec mlflow server --app-name basic-auth --backend-store-uri "$backend" \
    --artifacts-destination "${ARTIFACTS_DIR:-/mlartifacts}" --serve-artifacts --allowed-hosts "$allowed" \
    --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" "$@"

#!/usr/bin/env bash
# MLflow server: basic authentication on, PostgreSQL as the backend store. Passwords and keys come from
# secret files (never from the image or the compose file) and reach the server through files in a private
# folder (0700), never on a command line (`ps` shows those to every user) nor in the environment:
#   - PostgreSQL's password in a pgpass file (PGPASSFILE, read by libpq); the store URI holds none;
#   - the admin's password in the auth config file (read only when the user store has no admin yet);
#   - no user sees an experiment or model it was not granted (default_permission NO_PERMISSIONS): a creator
#     manages what it creates, an admin grants the rest;
#   - the writer account of the Ray nodes (MLFLOW_WRITER_USERNAME, a non-admin user) is created, or its
#     password reset, from secrets/mlflow_writer_password before the server starts.
set -euo pipefail
read_secret() { tr -d '\n' < "$1"; }
ini_value() { printf '%s' "${1//%/%%}"; }                               # configparser: a literal % is %%
pgpass_field() { local s=${1//\\/\\\\}; printf '%s' "${s//:/\\:}"; }    # pgpass: \ and : are escaped
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
secrets=${SECRETS_DIR:-/run/secrets}
pg_user=${POSTGRES_USER:?POSTGRES_USER is not set}
pg_db=${POSTGRES_DB:?POSTGRES_DB is not set}
pg_host=${POSTGRES_HOST:-postgres}
pg_port=${POSTGRES_PORT:-5432}
admin_username=${MLFLOW_ADMIN_USERNAME:-admin}

private="$(mktemp -d)"    # 0700: this user only
pg_password="$(read_secret "$secrets/postgres_password")"
(
    umask 077
    printf '%s:%s:%s:%s:%s\n' "$(pgpass_field "$pg_host")" "$(pgpass_field "$pg_port")" \
        "$(pgpass_field "$pg_db")" "$(pgpass_field "$pg_user")" "$(pgpass_field "$pg_password")" \
        > "$private/pgpass"
)
unset pg_password
export PGPASSFILE="$private/pgpass"
backend="postgresql+psycopg://${pg_user}@${pg_host}:${pg_port}/${pg_db}"

admin_password="$(read_secret "$secrets/mlflow_password")"
(
    umask 077
    cat > "$private/basic_auth.ini" <<INI
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = $(ini_value "$backend")
admin_username = $(ini_value "$admin_username")
admin_password = $(ini_value "$admin_password")
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
)
unset admin_password
export MLFLOW_AUTH_CONFIG_PATH="$private/basic_auth.ini"
# the Flask session key: MLflow reads it from the environment only (the server's own processes)
MLFLOW_FLASK_SERVER_SECRET_KEY="$(read_secret "$secrets/mlflow_flask_secret")"
export MLFLOW_FLASK_SERVER_SECRET_KEY

# The Ray nodes' account: created (or its password reset) from its secret file, never an admin.
if [[ -f $secrets/mlflow_writer_password ]]; then
    MLFLOW_WRITER_USERNAME=${MLFLOW_WRITER_USERNAME:-paradis-writer} \
        MLFLOW_WRITER_PASSWORD_FILE="$secrets/mlflow_writer_password" python "$here/mlflow-writer.py"
else
    echo "mlflow-entrypoint: no $secrets/mlflow_writer_password: no writer account for the Ray nodes" >&2
fi

# Host headers the server answers (DNS-rebinding protection): the compose service name and loopback.
allowed=${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:5000,localhost,localhost:5000,127.0.0.1,127.0.0.1:5000}
exec mlflow server --app-name basic-auth --backend-store-uri "$backend" \
    --artifacts-destination "${ARTIFACTS_DIR:-/mlartifacts}" --serve-artifacts --allowed-hosts "$allowed" \
    --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" "$@"

#!/usr/bin/env bash
# Ray nodes: the MLflow writer account's password from its secret file into ~/.mlflow/credentials (never
# the admin's, never from the image, never in the environment), a Ray token that only this user can read
# (0600), the dashboard on loopback unless told otherwise; then the command.
set -euo pipefail
secrets=${SECRETS_DIR:-/run/secrets}

# MLflow: the writer account, a non-admin user that may create experiments and owns (MANAGE) the ones it
# creates; MLFLOW_TRACKING_USERNAME names it. The admin account stays on the MLflow host. Its password goes
# to ~/.mlflow/credentials (0600), which MLflow's client reads where MLFLOW_TRACKING_PASSWORD is unset: not
# in the environment, which every Ray process (raylets, workers, job drivers) would inherit and show in
# /proc/PID/environ.
ini_value() { printf '%s' "${1//%/%%}"; }   # configparser: a literal % is %%
if [[ -f $secrets/mlflow_writer_password ]]; then
    password="$(tr -d '\n' < "$secrets/mlflow_writer_password")"   # unreadable: set -e stops here
    if [[ -z $password ]]; then
        echo "entrypoint: the MLflow writer password secret $secrets/mlflow_writer_password is empty" >&2
        exit 1
    fi
    creds="${HOME:?HOME is not set}/.mlflow/credentials"
    mkdir -p "$(dirname "$creds")" && chmod 700 "$(dirname "$creds")"
    (
        umask 077
        printf '[mlflow]\nmlflow_tracking_username = %s\nmlflow_tracking_password = %s\n' \
            "$(ini_value "${MLFLOW_TRACKING_USERNAME:-paradis-writer}")" "$(ini_value "$password")" > "$creds.tmp"
        mv -f "$creds.tmp" "$creds"
    )
    unset password
fi
if [[ -n ${MLFLOW_TRACKING_PASSWORD:-} ]]; then
    echo "entrypoint: warning: MLFLOW_TRACKING_PASSWORD is set: every Ray process inherits it;" \
        "mount mlflow_writer_password instead" >&2
fi
if [[ -e $secrets/mlflow_password ]]; then
    echo "entrypoint: warning: the MLflow admin password ($secrets/mlflow_password) is mounted on a Ray node;" \
        "mount mlflow_writer_password instead" >&2
fi

# A token file readable by this user only. Ray reads it as it finds it, and `ray get-auth-token --generate`
# writes 0644: chmod it, or, where it cannot be changed (a read-only mount, another owner), use a private
# 0600 copy in ~/.ray/auth_token.
private_mode() { local mode; mode=$(stat -L -c %a "$1"); (( (8#$mode & 8#077) == 0 )); }
token=${RAY_AUTH_TOKEN_PATH:-$secrets/ray_token}
if [[ ! -s $token ]]; then
    echo "entrypoint: the Ray token secret $token is missing or empty" >&2
    exit 1
fi
if ! private_mode "$token" && ! { chmod 600 "$token" 2>/dev/null && private_mode "$token"; }; then
    copy="${HOME:-/tmp}/.ray/auth_token"
    if [[ $copy != "$token" ]]; then
        mkdir -p "$(dirname "$copy")" && chmod 700 "$(dirname "$copy")"
        rm -f "$copy"
        (umask 077 && cp "$token" "$copy")
        echo "entrypoint: $token is readable by others and cannot be changed; using a 0600 copy, $copy" >&2
        token=$copy
    else
        echo "entrypoint: warning: $token is readable by others and cannot be changed" >&2
    fi
fi
export RAY_AUTH_TOKEN_PATH=$token
# a token Ray would find by default, if there is one, is private too
default_token="${HOME:-/tmp}/.ray/auth_token"
if [[ -f $default_token ]] && ! private_mode "$default_token"; then
    chmod 600 "$default_token" 2>/dev/null || echo "entrypoint: cannot chmod 600 $default_token" >&2
fi

# `ray start --head` without --dashboard-host: the dashboard and job API listen on RAY_DASHBOARD_HOST,
# 127.0.0.1 unless told otherwise (a container published through Docker needs 0.0.0.0 inside it).
if [[ ${1:-} == ray && ${2:-} == start ]]; then
    head=false dashboard_host=false
    for arg in "$@"; do
        case $arg in
            --head) head=true ;;
            --dashboard-host | --dashboard-host=*) dashboard_host=true ;;
        esac
    done
    if $head && ! $dashboard_host; then
        set -- "$@" "--dashboard-host=${RAY_DASHBOARD_HOST:-127.0.0.1}"
    fi
fi

mkdir -p "${PARADIS_HOME:-/shared/paradis}"
exec "$@"

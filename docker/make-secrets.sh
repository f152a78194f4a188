#!/usr/bin/env bash
# Writes random secrets into docker/secrets/ (once; existing files are kept) in a 0700 folder, readable by
# the containers' user and nobody else. No trailing newline: `kubectl create secret --from-file` keeps the
# file as it is, and an environment variable from it must hold the password alone.
#   ray_token               every Ray node and the job client
#   mlflow_writer_password  the Ray nodes' MLflow account (non-admin, owns the study experiments)
#   postgres_password, mlflow_password (MLflow admin), mlflow_flask_secret: the MLflow host only
#
# Compose mounts a file secret as it is on the host (owner and mode), and the images run as uid 1000
# (CONTAINER_UID): a 0600 file of another owner would be unreadable there. So:
#   - run as root: the files are 0600 and owned by CONTAINER_UID;
#   - run as CONTAINER_UID: 0600, as they are;
#   - run as another user: 0640, group = your primary group, whose id is written to .env as SECRETS_GID;
#     the compose services add that group (group_add), so the container's user reads them and, on a
#     system with a private group per user (Debian's default), no other host user does.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
container_uid=${CONTAINER_UID:-1000}
mkdir -p secrets
chmod 700 secrets
names=(ray_token mlflow_writer_password postgres_password mlflow_password mlflow_flask_secret)
for name in "${names[@]}"; do
    [[ -s secrets/$name ]] || python3 -c 'import secrets; print(secrets.token_hex(32), end="")' > "secrets/$name"
done
uid=$(id -u)
gid=$container_uid
if [[ $uid == 0 ]]; then
    chown "$container_uid:$container_uid" secrets/*
    mode=600 how="owned by uid $container_uid, the containers' user"
elif [[ $uid == "$container_uid" ]]; then
    mode=600 how="owned by you, uid $uid, the containers' user too"
else
    gid=$(id -g)
    mode=640 how="group $gid (your primary group; SECRETS_GID in .env, added to the containers' user)"
fi
chmod "$mode" secrets/*
# the containers add group SECRETS_GID: record it in .env (docker compose reads it from there)
[[ -f .env ]] || { [[ -f .env.example ]] && cp .env.example .env; } || touch .env
if grep -q '^SECRETS_GID=' .env; then
    sed -i "s/^SECRETS_GID=.*/SECRETS_GID=$gid/" .env
else
    printf '# written by make-secrets.sh: the group that may read docker/secrets/ in the containers\nSECRETS_GID=%s\n' \
        "$gid" >> .env
fi
echo "secrets (0$mode, $how) in $(pwd)/secrets: ${names[*]}"

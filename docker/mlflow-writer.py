"""The Ray nodes' MLflow account, made before the server starts (docker/mlflow-entrypoint.sh runs this).

A non-admin user named MLFLOW_WRITER_USERNAME (default ``paradis-writer``) with the password in the file
MLFLOW_WRITER_PASSWORD_FILE: created if missing, its password reset to the file's otherwise (rotation is
a new secret file and a restart). Under basic auth any user may create experiments and is given MANAGE on
those it creates, so the writer owns the study experiments and nothing else; ``default_permission`` of
the auth config decides what it may read elsewhere. It never becomes, and never replaces, an admin.

The user store is the auth config's ``database_uri`` (MLFLOW_AUTH_CONFIG_PATH); no password is read from
the command line or the environment (PostgreSQL's comes from PGPASSFILE).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    from mlflow.server.auth.config import read_auth_config
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    username = os.environ.get("MLFLOW_WRITER_USERNAME") or "paradis-writer"
    password = Path(os.environ["MLFLOW_WRITER_PASSWORD_FILE"]).read_text().strip("\r\n")
    config = read_auth_config()
    if username == config.admin_username:
        print(f"mlflow-writer: the writer {username!r} must not be the admin user", file=sys.stderr)
        return 1
    store = SqlAlchemyStore()
    store.init_db(config.database_uri)
    if not store.has_user(username, use_primary=True):
        store.create_user(username, password, is_admin=False)
        print(f"mlflow-writer: created the non-admin user {username!r}", file=sys.stderr)
    elif store.get_user(username).is_admin:
        print(f"mlflow-writer: {username!r} is an admin; name another writer account", file=sys.stderr)
        return 1
    else:
        store.update_user(username, password=password)
        print(f"mlflow-writer: {username!r} exists, password set from its secret file", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Test helpers: a real `mlflow server` on 127.0.0.1 backed by a throwaway PostgreSQL database.

Used by the `mlflow_server` fixture (tests/conftest.py) and by tests that need a database of their own.
Nothing here is mocked: the server is MLflow's own process (uvicorn workers), the backend
store is PostgreSQL and artifacts are proxied (`--serve-artifacts`) into a local folder.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from xlrec.platform.tracking.server import MlflowServer

PG_HOST = os.environ.get("XLREC_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("XLREC_TEST_PG_PORT", "5432"))
PG_USERS = [os.environ["XLREC_TEST_PG_USER"]] if os.environ.get("XLREC_TEST_PG_USER") else ["postgres", "root"]
PG_ADMIN_DB = os.environ.get("XLREC_TEST_PG_ADMIN_DB", "test")


def _admin_connect():
    import psycopg2

    errors = []
    for user in PG_USERS:
        for db in (PG_ADMIN_DB, "postgres"):
            try:
                conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=user, dbname=db, connect_timeout=5)
            except psycopg2.OperationalError as exc:
                errors.append(f"{user}@{db}: {str(exc).strip()}")
                continue
            conn.autocommit = True
            return conn, user
    raise RuntimeError(
        f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} ({'; '.join(errors)}). "
        f"Start it (e.g. `pg_ctlcluster 15 main start`)."
    )


def create_database(prefix: str = "xlrec_test") -> str:
    """Create an empty throwaway database; return its SQLAlchemy URI (psycopg2 driver)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn, user = _admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    # SQLAlchemy 2.1 maps plain postgresql:// to psycopg (v3), which is not installed:
    # name the psycopg2 driver explicitly.
    return f"postgresql+psycopg2://{user}@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(uri: str) -> None:
    name = uri.rsplit("/", 1)[1]
    conn, _ = _admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


class PostgresMlflowServer(MlflowServer):
    """An MlflowServer on a throwaway PostgreSQL database that is dropped again on stop()."""

    def __init__(self, workdir: str | Path, workers: int = 2, db_prefix: str = "xlrec_test"):
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.db_uri = create_database(db_prefix)
        super().__init__(self.db_uri, workdir / "artifacts", workers=workers, log_path=workdir / "server.log")

    def stop(self, timeout: float = 20.0) -> None:
        try:
            super().stop(timeout)
        finally:
            if self.db_uri:
                drop_database(self.db_uri)
                self.db_uri = None

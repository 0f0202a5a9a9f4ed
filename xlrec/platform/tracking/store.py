"""Tracking-store URIs checked before any work, and sqlite stores created atomically.

MLflow itself retries an unreachable database for ~2 minutes and then prints tracebacks,
maps an unknown scheme to a stack trace, silently creates missing directories for
`sqlite:///` paths, and migrates a new sqlite file in place (~8 s on a small machine): a
process killed mid-way leaves a half-made file that fails forever after with `table ...
already exists`. `check_store` turns each of these into one paragraph within seconds, and
`ensure_sqlite_store` builds a new file at a temporary path beside it and links it into
place only once it is complete, so no reader ever sees a half-made store.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from xlrec.errors import XlrecError
from xlrec.redact import basic_auth_request, redact

# Base schemes MLflow has a tracking store for (a bare path or file: is MLflow's file store).
_SQL = {"sqlite", "postgresql", "mysql", "mssql"}
_KNOWN = {"", "file", "http", "https", "databricks", "databricks-uc", "uc"} | _SQL
# A store that refuses (dead server, wrong port, bad password) answers at once; this bounds only
# one that accepts and then stalls. 30 s, not 5: a tracking server on a loaded machine (a sweep's
# trials, their Ray workers and the server sharing two cores) answered its health check in over
# 5 s, and the trial then failed before training.
_TIMEOUT_S = 30


class StoreError(XlrecError):
    """The tracking store cannot be used (wrong URI, missing driver, down, or half-made)."""


def check_store(uri: str) -> None:
    """Fail fast, with one paragraph, when `uri` names a store this process cannot use."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower() if "://" in uri else ""
    base = scheme.split("+", 1)[0]
    shown = redact(uri)
    if base not in _KNOWN:
        raise StoreError(
            f"Unsupported tracking URI {shown!r}: MLflow has no store for the scheme {scheme!r}. Use "
            f"http://HOST:PORT for a tracking server, sqlite:///PATH for a local file, or "
            f"postgresql+psycopg2://USER@HOST:PORT/DB for PostgreSQL (--tracking-uri / MLFLOW_TRACKING_URI)."
        )
    if base in ("http", "https"):
        _check_server(uri, shown)
    elif base == "sqlite":
        ensure_sqlite_store(uri)
    elif base in _SQL:
        _check_database(uri, shown)


def _check_server(uri: str, shown: str) -> None:
    """Health, then one cheap API call: a server whose own backend store is down answers
    /health but fails every request."""
    base = uri.rstrip("/")
    for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        try:
            with urllib.request.urlopen(basic_auth_request(base + path), timeout=_TIMEOUT_S) as resp:
                if resp.status == 200:
                    continue
                problem = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            body = exc.read(600).decode(errors="replace").strip().replace("\n", " ")
            problem = f"HTTP {exc.code} {body[:300]}".strip()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problem = str(getattr(exc, "reason", exc))
        if path == "/health":
            raise StoreError(
                f"Cannot reach the MLflow tracking server at {shown} ({redact(problem)}). Start it (e.g. `mlflow "
                f"server --host 127.0.0.1 --port 5000`) or fix --tracking-uri / MLFLOW_TRACKING_URI; nothing was "
                f"trained or logged."
            )
        raise StoreError(
            f"The MLflow tracking server at {shown} is up but cannot serve requests ({redact(problem)}); its own "
            f"backend store is probably down or misconfigured. Check the server's log and its "
            f"--backend-store-uri; nothing was trained or logged."
        )


def _check_database(uri: str, shown: str) -> None:
    """The SQLAlchemy driver is installed and the database answers within a few seconds."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        url = make_url(uri)
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except ImportError as exc:
        driver = url.drivername
        raise StoreError(
            f"The database driver for {shown} is not installed ({exc}). Install it, or name an installed driver "
            f"in the URI, e.g. postgresql+psycopg2://USER@HOST:PORT/DB (`pip install psycopg2-binary`); "
            f"{driver!r} was asked for."
        ) from None
    except Exception as exc:  # malformed URI (SQLAlchemy's ArgumentError) or unknown dialect
        raise StoreError(
            f"Cannot use the tracking URI {shown}: {redact(exc)}. Fix --tracking-uri / MLFLOW_TRACKING_URI."
        ) from None
    connect_args = {"connect_timeout": _TIMEOUT_S} if url.get_backend_name() in ("postgresql", "mysql") else {}
    engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect():
            pass
    except Exception as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise StoreError(
            f"Cannot connect to the tracking database {shown} ({redact(first[0] if first else type(exc).__name__)}). "
            f"Check that it runs and that host, port, user, password and database name are right; nothing was "
            f"trained or logged."
        ) from None
    finally:
        engine.dispose()


# --- sqlite -----------------------------------------------------------------------------------


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///` URI (None for in-memory databases)."""
    path = uri.split("://", 1)[1][1:].split("?", 1)[0]  # sqlite:///rel or sqlite:////abs
    return Path(path).expanduser().absolute() if path and path != ":memory:" else None


def ensure_sqlite_store(uri: str) -> Path | None:
    """Check an existing sqlite store, or create a new one atomically; returns its path."""
    path = sqlite_path(uri)
    if path is None:
        return None
    if not path.parent.is_dir():
        raise StoreError(
            f"The directory of the tracking database {path} does not exist. Create it (`mkdir -p {path.parent}`) "
            f"or fix the sqlite:/// path in --tracking-uri / MLFLOW_TRACKING_URI (four slashes for an absolute "
            f"path)."
        )
    if not path.exists() or not _tables(path):
        _create(path)
    _check_complete(path)
    return path


def _tables(path: Path) -> set[str]:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not an MLflow sqlite store ({exc}). Point --tracking-uri at another file, "
            f"or move this one aside."
        ) from None


def _create(path: Path) -> None:
    """Create and migrate at a temporary path in the same directory, then link it into place
    (link, not rename: a store another process created meanwhile is never replaced)."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    _remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        store = SqlAlchemyStore(f"sqlite:///{tmp}", DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)  # as MLflow would
        store.engine.dispose()
        try:
            os.link(tmp, path)
        except FileExistsError:
            if _tables(path):  # another process finished first: use its store
                return
            os.replace(tmp, path)  # an empty file (e.g. `touch mlflow.db`) holds nothing to keep
    finally:
        for leftover in (tmp, *(tmp.with_name(tmp.name + ext) for ext in ("-journal", "-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


def _remove_stale_temps(path: Path) -> None:
    """Temporary stores of creators that were killed (their pid is gone)."""
    import psutil

    prefix = f".{path.name}.creating-"
    for tmp in path.parent.glob(prefix + "*"):  # the store and its -journal / -wal / -shm files
        pid = tmp.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            tmp.unlink(missing_ok=True)


def _check_complete(path: Path) -> None:
    """A store with tables but no (or an unfinished) schema version was half-made by a process
    killed during MLflow's in-place migration; MLflow would fail on it with `table ... already exists`."""
    from mlflow.store.db.base_sql_model import Base

    tables = _tables(path)
    missing = set(Base.metadata.tables) - tables
    version = None
    if "alembic_version" in tables:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            version = row[0] if row else None
            runs = con.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        finally:
            con.close()
    else:
        runs = 0
    if version and not missing:
        return
    fix = (
        f"It holds no runs: delete it (`rm {path}`) and run the command again."
        if not runs
        else f"Back it up, then run `mlflow db upgrade sqlite:///{path}`."
    )
    raise StoreError(
        f"The tracking database {path} is half-made (schema version {version or 'missing'}, "
        f"{len(missing)} MLflow tables missing): a process was stopped while creating it. {fix}"
    )

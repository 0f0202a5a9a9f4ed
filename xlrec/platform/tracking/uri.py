"""Which tracking store a command logs to: the one place the tracking URI is resolved.

Order: --tracking-uri, then MLFLOW_TRACKING_URI, then MLflow's own embedded default
`sqlite:///mlflow.db` (nothing to start). A sweep differs in one way: its trials run
concurrently, and many processes must not write one sqlite file directly (locking errors),
so a sqlite store is served over HTTP by a local `mlflow server` for the sweep's duration,
and any other non-HTTP store is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xlrec.errors import ConfigError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_SQLITE = "sqlite:///"


@dataclass(frozen=True)
class TrackingTarget:
    """A resolved tracking store.

    kind: "server" (http/https), "sqlite" or "other" (a database URL, a file store, ...).
    serve_db: for a sweep, the sqlite file a local server must serve (None: log to `uri`).
    """

    uri: str
    kind: str
    serve_db: Path | None = None


def _kind(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return "server"
    return "sqlite" if uri.startswith(_SQLITE) else "other"


def resolve_tracking(explicit: str | None = None, *, sweep_home: Path | None = None) -> TrackingTarget:
    """The store of a run (`sweep_home` None) or of a sweep whose default store lives in
    `sweep_home` (the working directory, or ~/.xlrec in a Ray job whose directory Ray deletes)."""
    given = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if sweep_home is None:
        uri = given or DEFAULT_TRACKING_URI
        return TrackingTarget(uri, _kind(uri))
    if given and _kind(given) == "server":
        return TrackingTarget(given, "server")
    if not given:
        db = sweep_home / "mlflow.db"
    elif _kind(given) == "sqlite":  # `mlflow run` exports the sqlite store it uses, e.g. sqlite:////abs/mlflow.db
        db = Path(given[len(_SQLITE) :]).resolve()
    else:
        raise ConfigError(
            f"A sweep logs its trials over HTTP; {given!r} is neither a tracking server nor a "
            f"sqlite file it could serve. Pass --tracking-uri http://HOST:PORT."
        )
    return TrackingTarget(f"{_SQLITE}{db}", "sqlite", serve_db=db)


def tracking_uri(explicit: str | None = None) -> str:
    """The URI a single run (or a platform command) logs to."""
    return resolve_tracking(explicit).uri


def check_reachable(uri: str) -> None:
    """Fail fast (before any training) when the store cannot be used: see xlrec.platform.tracking.store."""
    from xlrec.platform.tracking.store import check_store

    check_store(uri)


def connect(explicit: str | None = None) -> str:
    """Resolve, check and select the store a platform command reads (--tracking-uri or the
    environment's); returns its URI."""
    import mlflow

    from xlrec.platform.mlflow_env import quiet_links_for

    uri = tracking_uri(explicit)
    check_reachable(uri)
    quiet_links_for(uri)
    mlflow.set_tracking_uri(uri)
    return uri


# `mlflow ui`'s address for a store it serves from a file; MLflow's UI opens an experiment on its
# GenAI overview unless the URL asks for the training view (the `workflowType` after the hash route)
MLFLOW_UI = "http://127.0.0.1:5000"
TRAINING_VIEW = "workflowType=machine_learning"


def ui_url(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment (its training-runs table) or of one run, at `base`."""
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/{page}?{TRAINING_VIEW}"

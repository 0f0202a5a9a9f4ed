"""What several commands share: the tracking flag and the connection to the tracking store."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_tracking_args(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)"
    )


def connect(args: argparse.Namespace) -> str:
    """Check the tracking store and point MLflow at it (xlrec.platform.tracking.uri.connect)."""
    from xlrec.platform.tracking.uri import connect as connect_store

    return connect_store(args.tracking_uri)


def data_source(flag: str | None, recorded: str | None) -> str | None:
    """Where evaluate/recommend read the model's dataset: --source, else the model's recorded
    source only when it is a local directory that exists here. A model file is untrusted input,
    so a URL written into its config is never fetched (and it is stored redacted anyway);
    without either, the usual XLREC_DATA_MIRROR / download resolution applies."""
    if flag:
        return flag
    if recorded and "://" not in recorded and Path(recorded).is_dir():
        return recorded
    return None

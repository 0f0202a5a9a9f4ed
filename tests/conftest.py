"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# Real datasets shared beside the repository: ../shared/data/<name>/ (e.g. ml-100k/u.data).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared mirror directory with real raw datasets (skips when it is absent)."""
    if not (SHARED_DATA / "ml-100k" / "u.data").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


# --- MLflow platform fixtures (tests/mlflow_server.py) --------------------------------------------


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (PostgreSQL backend in a throwaway database, served artifacts).

    Yields its http://127.0.0.1:PORT URI; stops the server and drops the database afterwards.
    """
    from mlflow_server import PostgresMlflowServer

    server = PostgresMlflowServer(tmp_path_factory.mktemp("mlflow-server"), workers=2)
    try:
        server.start(timeout=120)
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def sqlite_tracking_uri(tmp_path) -> str:
    """MLflow's embedded backend: a SQLite file in tmp_path (nothing to start)."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"

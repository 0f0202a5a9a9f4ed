"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# MLflow's settings for xlrec processes (telemetry off: its thread mutates os.environ while
# others iterate it) before any test module imports mlflow.
import xlrec.platform  # noqa: F401
from helpers import SHARED_DATA, Server

# two xdist workers on two cores (scripts/test): the trainings run in a worker take one thread each,
# as its subprocesses do (helpers.xlrec_env); more would only compete with the other worker's
torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """The shared mirror directory with real raw datasets (skips when it is absent)."""
    if not (SHARED_DATA / "ml-100k" / "u.data").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private, empty data cache (XLREC_DATA_DIR); no mirror or unpack limit inherited."""
    root = tmp_path / "cache"
    monkeypatch.setenv("XLREC_DATA_DIR", str(root))
    monkeypatch.delenv("XLREC_DATA_MIRROR", raising=False)
    monkeypatch.delenv("XLREC_MAX_UNPACKED_BYTES", raising=False)
    return root


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1 for dataset archives (helpers.Server)."""
    srv = Server()
    yield srv
    srv.close()


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
def isolated_cli(tmp_path, monkeypatch) -> None:
    """In-process CLI calls in tmp_path with a private data cache and no inherited mirror,
    tracking store, run or Ray cluster."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XLREC_DATA_DIR", str(tmp_path / "cache"))
    for key in ("XLREC_DATA_MIRROR", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def sqlite_tracking_uri(tmp_path) -> str:
    """MLflow's embedded backend: a SQLite file in tmp_path (nothing to start)."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


# pytest-xdist (`--dist loadfile`, scripts/test) hands out test modules in collection order; the
# longest first leaves the short ones to even out the two workers' ends (longest-processing-time-
# first scheduling). The longest, from scripts/test's duration list (DEVELOPERS.md "The tests' time"):
LONGEST_FIRST = (
    "test_sweep_resume.py",
    "test_report_book.py",
    "test_run_states.py",
    "test_sweeps.py",
    "test_journey_plugin.py",
    "test_store_outage.py",
    "test_team_topology.py",
    "test_tune.py",
    "test_tracking.py",
    "test_journey_main.py",
    "test_journey_ray.py",
    "test_sweep_node_failure.py",
    "test_model_safety.py",
    "test_signals_under_load.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order

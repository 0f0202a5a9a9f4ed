"""Tracking stores that cannot be used fail fast with one paragraph; sqlite stores are never half-made.

Real processes throughout: `python -m xlrec` against wrong URIs, the real PostgreSQL on
127.0.0.1, and processes SIGKILLed while they create a new sqlite store.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import free_port, run_xlrec, xlrec_env

PG = os.environ.get("XLREC_TEST_PG_HOST", "127.0.0.1") + ":" + os.environ.get("XLREC_TEST_PG_PORT", "5432")
TINY = [
    "--model",
    "gru4rec",
    "--dataset",
    "synthetic",
    "--synthetic-users",
    "60",
    "--synthetic-items",
    "40",
    "--epochs",
    "1",
    "--embedding-dim",
    "8",
    "--max-len",
    "10",
    "--device",
    "cpu",
]


def _xlrec(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m xlrec ARGS` in tmp_path, its data cache in tmp_path/data."""
    return run_xlrec(list(args), xlrec_env(tmp_path / "data"), cwd=tmp_path, timeout=300)


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("foo://bar", "no store for the scheme 'foo'"),
        ("postgresql+pg8000://xlrec:hunter2@127.0.0.1/mlflow", "driver for postgresql+pg8000://xlrec:***@"),
        (f"postgresql+psycopg2://postgres:hunter2@{PG}/xlrec_no_such_db", "Cannot connect to the tracking database"),
        ("postgresql+psycopg2://postgres:hunter2@127.0.0.1:{port}/mlflow", "Cannot connect to the tracking database"),
        ("sqlite:///{tmp}/no/such/dir/mlflow.db", "does not exist. Create it"),
        ("http://127.0.0.1:{port}", "Cannot reach the MLflow tracking server"),
    ],
)
def test_unusable_store_fails_fast_with_one_paragraph(tmp_path, uri, expected):
    uri = uri.format(port=free_port(), tmp=tmp_path)  # a free port: nothing listens there
    start = time.monotonic()
    proc = _xlrec(tmp_path, "train", *TINY, "--tracking-uri", uri)
    took = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert took < 60, f"{took:.0f}s to fail"
    assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("xlrec: error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-3000:]
    assert proc.stdout == ""
    assert not (tmp_path / "no").exists()  # no directory (or store) silently created
    assert not (tmp_path / "data").exists()  # failed before any data work


def _store_files(d: Path) -> list[Path]:
    return [p for p in d.iterdir() if p.name.startswith(("mlflow.db", ".mlflow.db"))]


def test_killed_store_creation_never_leaves_a_half_made_store(tmp_path):
    """SIGKILL a process while it creates (migrates) a new sqlite store, at several points; the
    next command works on the store (or names the one-line fix), never `table ... already exists`."""
    delays = [0.3, 1.5, 4.0]  # seconds after the store file appears
    procs = []
    for i, delay in enumerate(delays):
        d = tmp_path / f"attempt{i}"
        d.mkdir()
        cmd = [sys.executable, "-m", "xlrec", "registry", "list", "--tracking-uri", f"sqlite:///{d / 'mlflow.db'}"]
        procs.append(
            (
                d,
                delay,
                subprocess.Popen(
                    cmd, cwd=d, env=xlrec_env(d / "data"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                ),
            )
        )
    killed = 0
    for d, delay, proc in procs:
        deadline = time.monotonic() + 240
        while not any(p.stat().st_size for p in _store_files(d)) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    assert killed >= 2  # the migration takes seconds: most attempts are hit mid-way
    for d, _, _ in procs:
        after = _xlrec(d, "registry", "list", "--tracking-uri", f"sqlite:///{d / 'mlflow.db'}")
        assert "already exists" not in after.stderr and "Traceback" not in after.stderr, after.stderr[-3000:]
        if after.returncode != 0:
            assert after.returncode == 2 and "is half-made" in after.stderr and "rm " in after.stderr
        else:
            assert "No registered models" in after.stdout
        assert [p.name for p in _store_files(d)] == ["mlflow.db"]  # no temporary store left behind


def test_half_made_store_is_detected_with_the_fix(tmp_path):
    """A store with MLflow's tables but no schema version (what a kill during MLflow's own in-place
    migration leaves) is refused with one line saying what to do, instead of a migration traceback."""
    db = tmp_path / "mlflow.db"
    made = _xlrec(tmp_path, "registry", "list", "--tracking-uri", f"sqlite:///{db}")
    assert made.returncode == 0, made.stderr[-3000:]
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM alembic_version")
    proc = _xlrec(tmp_path, "train", *TINY, "--tracking-uri", f"sqlite:///{db}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("xlrec: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "is half-made (schema version missing" in errors[0] and f"`rm {db}`" in errors[0]

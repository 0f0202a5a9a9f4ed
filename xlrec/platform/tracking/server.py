"""A local `mlflow server` process for the duration of a sweep.

Many concurrent trials must not write one sqlite file directly (locking errors), so
with the embedded default a sweep serves `sqlite:///mlflow.db` through MLflow's own
server and every trial logs over HTTP. Also used by the tests (with PostgreSQL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from xlrec.errors import XlrecError

_WORKER_HEALTHCHECK_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(uri: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def stop_process_group(pgid: int, timeout: float = 20.0) -> None:
    """SIGTERM a process group, then SIGKILL whatever of it is left after `timeout` seconds
    (uvicorn workers and MLflow's job runners included: a stopped sweep leaves none behind)."""
    import psutil

    def members() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            if not members():
                return
            time.sleep(0.2)


class MlflowServer:
    """`python -m mlflow server` on a free loopback port; use as a context manager."""

    def __init__(
        self,
        backend_store_uri: str,
        artifacts_dir: str | Path,
        workers: int = 2,
        log_path: str | Path | None = None,
        port: int | None = None,
    ):
        self.backend_store_uri = backend_store_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.workers = workers
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path) if log_path else self.artifacts_dir.parent / f"mlflow-server-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 120.0) -> str:
        self.launch()
        return self.wait_healthy(timeout)

    def launch(self) -> None:
        """Start the server process without waiting for it to answer (`wait_healthy` does): a
        sweep starts Ray meanwhile, since each takes seconds to come up."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        backend = self.backend_store_uri
        if backend.startswith("sqlite:"):
            # Create/migrate the schema once, here, atomically: the server's workers would otherwise
            # race to create the same tables in a new sqlite file ("table ... already exists").
            from xlrec.platform.tracking.store import ensure_sqlite_store

            path = ensure_sqlite_store(backend)
            if path is not None:
                # absolute: the server runs in the artifacts' folder, where a relative
                # sqlite:///mlflow.db would be a new, empty store
                backend = f"sqlite:///{path}" + (f"?{backend.split('?', 1)[1]}" if "?" in backend else "")
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            backend,
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.artifacts_dir),
            "--workers",
            str(self.workers),
            # uvicorn restarts a worker that misses a 5-s health ping; on a loaded machine a worker
            # still importing mlflow misses it, and the restarts kept the server unhealthy for minutes
            "--uvicorn-opts",
            f"--timeout-worker-healthcheck {_WORKER_HEALTHCHECK_S}",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        # No job execution: MLflow 3's server otherwise starts a job runner and seven huey consumer
        # processes, each importing mlflow, for GenAI jobs (online scorers, trace archival) that
        # poll every minute. A sweep's store needs none of them, and on a 2-core machine their
        # start competed with Ray's and the first trials' for the cores.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        self._log = open(self.log_path, "wb")
        # Own process group: stop() ends the server and its uvicorn workers, and only those.
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=str(self.artifacts_dir.parent),
        )

    def wait_healthy(self, timeout: float = 120.0) -> str:
        """Block until the launched server answers /health; stop it and raise if it does not."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout  # a first start runs the DB migrations
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if health(self.uri) == 200:
                return self.uri
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise XlrecError(
            f"The local mlflow server did not become healthy at {self.uri} within {timeout:.0f}s "
            f"(exit code {self.proc.returncode}); see {self.log_path}. Last lines:\n{tail[-800:]}"
        )

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            stop_process_group(self.proc.pid, timeout)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        else:
            stop_process_group(self.proc.pid, 0)  # workers the server left behind
        if self._log:
            self._log.close()

    def __enter__(self) -> MlflowServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def local_sqlite_server(db: str | Path = "mlflow.db", port: int | None = None) -> MlflowServer:
    """A sqlite store (the embedded default ./mlflow.db) served over HTTP, artifacts in mlartifacts/ beside it."""
    db = Path(db).resolve()
    # One uvicorn worker on a machine of two cores or fewer: each worker imports mlflow's server app
    # while Ray and the first trials start on the same cores (docs/results/main-job.md "What the
    # job's settings save"); elsewhere two, for the requests of many trials at once.
    workers = 1 if (os.cpu_count() or 1) <= 2 else 2
    return MlflowServer(
        f"sqlite:///{db}",
        db.parent / "mlartifacts",
        workers=workers,
        log_path=db.parent / ".mlflow-server.log",
        port=port,
    )


def served_artifacts_root(uri: str) -> Path | None:
    """For a sweep's local sqlite store, the folder its server keeps artifacts in (mlartifacts/
    beside the database); None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    root = Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts"
    return root if root.is_dir() else None


def local_artifact_dir(artifact_uri: str, root: Path | None) -> Path | None:
    """Where a run's `mlflow-artifacts:/...` files live under `root` (see served_artifacts_root).

    MLflow resolves such URIs only through a running server, and starting one costs tens of
    seconds on a small machine, while the files sit on this disk; so a reader on the same host
    maps the URI itself, as the server would. None: not such a URI (use MLflow), or one that
    would leave `root` (a URI from the store is untrusted)."""
    prefix = "mlflow-artifacts:"
    if root is None or not artifact_uri.startswith(prefix):
        return None
    rel = artifact_uri[len(prefix) :].lstrip("/")
    path = (root / rel).resolve()
    return path if path.is_relative_to(root.resolve()) else None

"""What the test modules share: where things are, the environment and command line of an `xlrec`
process, what its user-facing error and final JSON line must look like, and a real HTTP server
that serves dataset archives built in the test (a mirror or the official download URL).

Fixtures live in conftest.py; the PostgreSQL-backed `mlflow server` in mlflow_server.py. Test
modules import from here, never from each other.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from xlrec.platform.server import free_port

REPO = Path(__file__).resolve().parents[1]
# Real datasets shared beside the repository: ../shared/data/<name>/ (e.g. ml-100k/u.data).
SHARED_DATA = REPO.parent / "shared" / "data"
# The venv's `ray` command (a test's Ray cluster is started as the user starts one)
RAY = str(Path(sys.executable).with_name("ray"))

# Settings of the process running the tests that must not leak into an `xlrec` it starts: a
# tracking server or run, a Ray cluster and its token, a test hook, a data mirror.
_NOT_INHERITED = ("MLFLOW_", "RAY_AUTH_", "XLREC_TEST_")
_NOT_INHERITED_NAMES = ("RAY_ADDRESS", "XLREC_DATA_MIRROR")


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    return free_port()


def xlrec_env(data_dir: str | Path, mirror: str | Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for an `xlrec` (or `ray start`) subprocess: a private data cache, the given mirror
    only, nothing inherited that points at a tracking store, a Ray cluster or a test hook."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED) and k not in _NOT_INHERITED_NAMES}
    env.update({"XLREC_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    if mirror is not None:
        env["XLREC_DATA_MIRROR"] = str(mirror)
    env.update(extra)
    return env


def run_xlrec(
    args: list[str], env: dict[str, str], cwd: str | Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python -m xlrec ARGS` with captured text output."""
    return subprocess.run(
        [sys.executable, "-m", "xlrec", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def sweep(cwd: Path, *args: str, data_dir: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m xlrec sweep ...` in cwd, with no MLflow/Ray address inherited from this process."""
    return run_xlrec(["sweep", *args], xlrec_env(data_dir or cwd / "data", **(env or {})), cwd=cwd, timeout=900)


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    """The JSON summary a successful command prints as its last `{...}` line."""
    assert proc.returncode == 0, proc.stderr[-6000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stdout[-3000:]
    return json.loads(lines[-1])


def error_line(stderr: str) -> str:
    """The CLI's user error: exactly one 'xlrec: error:' paragraph and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("xlrec: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def pids_using(path: str) -> list[int]:
    """Processes (other than this one) whose command line names `path`: what a Ray cluster in its
    own temp dir left behind."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if path.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


# --- dataset archives and the HTTP server that serves them ----------------------------------


def make_zip(files: dict[str, str | bytes], top: str | None = "ml-100k") -> bytes:
    """A zip of `files` laid out as the official archive is (one top folder) or flat (top=None)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if top:
            zf.writestr(f"{top}/", "")
        for name, data in files.items():
            zf.writestr(f"{top}/{name}" if top else name, data)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.hits.append(self.path)
        route = srv.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        body, mode = route
        if mode == "error500":
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))  # the full length, even when truncating
        self.end_headers()
        if mode == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True  # drop the connection mid-body
            return
        if mode == "stall":  # half the body, then nothing until the server closes
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            srv.release.wait(60)
            return
        if mode == "slow":  # in pieces, so that concurrent clients overlap
            for start in range(0, len(body), 1 << 16):
                self.wfile.write(body[start : start + (1 << 16)])
                self.wfile.flush()
                time.sleep(0.02)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server:
    """A threaded HTTP server on a free loopback port; `serve` adds a path and how to answer it."""

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes, self.httpd.hits, self.httpd.release = {}, [], threading.Event()
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, body: bytes, mode: str = "ok") -> str:
        self.httpd.routes[path] = (body, mode)
        return self.base + path

    @property
    def hits(self) -> list[str]:
        return self.httpd.hits

    def close(self):
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def leftovers(cache: Path) -> list[str]:
    """Every file or folder under downloads/ and raw/ (what a failure must not leave behind)."""
    return sorted(
        str(p.relative_to(cache))
        for sub in ("downloads", "raw")
        if (cache / sub).exists()
        for p in (cache / sub).rglob("*")
    )

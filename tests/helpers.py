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
import re
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from xlrec.platform.tracking.server import free_port

if TYPE_CHECKING:  # imported where used: most test modules need none of them
    import optuna
    import pandas as pd

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
    # scripts/test runs two xdist workers on two cores: a training there on torch's default of a thread
    # per core competes with the other worker's, and OpenMP's threads spin while they wait
    env.setdefault("OMP_NUM_THREADS", "1")
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


# --- sweeps (test_sweeps.py, test_sweep_groups.py, test_sweep_server_mode.py) ------------------------

# A synthetic dataset small enough for a sweep of several trials in CI
TINY = [
    "--set",
    "synthetic_users=80",
    "--set",
    "synthetic_items=40",
    "--set",
    "synthetic_mean_len=12",
    "--set",
    "window_stride=0",
]


def isolate_sweep(tmp_path: Path, monkeypatch) -> None:
    """A sweep test in its own working directory, with no tracking server or run inherited."""
    monkeypatch.chdir(tmp_path)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XLREC_DATA_DIR", str(tmp_path / "data"))


class SweepOutcome:
    """What one finished sweep left in its working directory."""

    def __init__(self, cwd: Path, proc: subprocess.CompletedProcess):
        self.cwd = cwd
        self.proc = proc
        from mlflow import MlflowClient

        self.summary = summary_of(proc)
        self.client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
        self.parent = self.client.get_run(self.summary["parent_run_id"])
        exp = self.parent.info.experiment_id
        runs = self.client.search_runs([exp], max_results=1000)
        self.children = [r for r in runs if r.info.run_id != self.parent.info.run_id]

    def artifact_dir(self, run) -> Path:
        # served artifacts: mlflow-artifacts:/<exp>/<run>/artifacts -> ./mlartifacts/<exp>/<run>/artifacts
        uri = run.info.artifact_uri
        assert uri.startswith("mlflow-artifacts:/"), uri
        return self.cwd / "mlartifacts" / uri[len("mlflow-artifacts:/") :]

    def parent_csv(self, name: str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_csv(self.artifact_dir(self.parent) / name)

    def study(self) -> optuna.Study:
        import optuna

        storage = f"sqlite:///{self.cwd / 'optuna.db'}"
        names = optuna.study.get_all_study_names(storage)
        assert names == [f"{self.parent.data.tags['xlrec.sweep_name']}-{self.parent.info.run_id[:8]}"]
        return optuna.load_study(study_name=names[0], storage=storage)


def assert_nested_and_closed(out: SweepOutcome, n_trials: int) -> None:
    parent_id = out.parent.info.run_id
    assert out.parent.info.status == "FINISHED"
    assert out.parent.data.tags["xlrec.sweep"] == "parent"
    assert "mlflow.parentRunId" not in out.parent.data.tags
    assert len(out.children) == n_trials
    for child in out.children:
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        assert child.data.tags["xlrec.sweep_run_id"] == parent_id
        assert child.info.status != "RUNNING"
    s = out.summary
    assert s["trials_done"] + s["trials_failed"] + s["trials_pruned"] == n_trials
    for key in ("trials_done", "trials_failed", "trials_pruned"):
        assert out.parent.data.metrics[key] == s[key]


def copy_checkout(dest: Path) -> Path:
    """The repository's tracked and untracked-not-ignored files copied to `dest`, as a fresh clone
    of this working tree would have them (journey tests run the README's commands there)."""
    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for name in filter(None, files):
        src = root / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
    return dest


def exec_line(line: str) -> str:
    """A README command line (`VAR=value ... cmd args &`) as `bash -c` text that execs it, so the
    process started is the command itself (its assignments stay in its environment)."""
    line = line.rstrip().removesuffix("&").rstrip()
    return re.sub(r"^((?:[A-Z_][A-Z0-9_]*=\S* )*)", r"\1exec ", line, count=1)


def wait_for_ping(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Until `mlflow models serve` at `url` answers /ping (its process `proc` logging to `log`)."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"mlflow models serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow models serve did not answer /ping in {timeout:.0f} s:\n{log.read_text()[-3000:]}")

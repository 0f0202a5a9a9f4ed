"""Credentials never shown (#13 C): a password in the tracking URI or in --source appears in no
output, no stored param/tag/metadata and no artifact file.

Real components: a throwaway PostgreSQL database as MLflow's backend store (trust auth accepts
any password, so the URI can carry one), real `xlrec` subprocesses, a closed loopback port for
the unreachable server, `pg_dump` of the whole database, and every file the runs wrote.
"""

from __future__ import annotations

import base64
import http.server
import random
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from helpers import closed_port, run_xlrec, xlrec_env
from mlflow_server import create_database, drop_database

SECRET = "S3cretPw"  # every password below starts with it, so one grep finds any of them


@pytest.fixture
def pg_store():
    """(URI with a password, URI without) of a throwaway PostgreSQL database, dropped afterwards."""
    plain = create_database("xlrec_redact")
    scheme, rest = plain.split("://", 1)
    user, host = rest.split("@", 1)
    try:
        yield f"{scheme}://{user}:{SECRET}1@{host}", plain
    finally:
        drop_database(plain)


def _raw_ml100k(data_dir: Path) -> None:
    """A small ML-100K-format file already in the raw cache, so `--source URL` is recorded but not fetched
    (urllib cannot send credentials embedded in a URL; the recorded value is what must not leak)."""
    rng = random.Random(0)
    rows = [f"{u}\t{rng.randint(1, 40)}\t{rng.randint(1, 5)}\t{1000 * u + t}" for u in range(1, 61) for t in range(8)]
    raw = data_dir / "raw" / "ml-100k"
    raw.mkdir(parents=True)
    (raw / "u.data").write_text("\n".join(rows) + "\n")


def _pg_dump(plain_uri: str) -> str:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    rest = plain_uri.split("://", 1)[1]
    user, hostpart = rest.split("@", 1)
    hostport, db = hostpart.split("/", 1)
    host, port = hostport.split(":")
    proc = subprocess.run(
        ["pg_dump", "-h", host, "-p", port, "-U", user, "--data-only", db], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _files_with(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def test_no_command_shows_or_stores_a_password(tmp_path, pg_store):
    store, plain = pg_store
    data_dir = tmp_path / "data"
    _raw_ml100k(data_dir)
    source = f"http://reader:{SECRET}2@127.0.0.1:{closed_port()}/mirror/"
    dead = f"http://admin:{SECRET}3@127.0.0.1:{closed_port()}"
    outputs: dict[str, subprocess.CompletedProcess] = {}

    def run(name: str, *args: str, data: Path = data_dir) -> subprocess.CompletedProcess:
        proc = run_xlrec(list(args), xlrec_env(data), cwd=tmp_path, timeout=600)
        outputs[name] = proc
        return proc

    # the empty store first: every user mistake names the store, never its password
    assert run("registry list (empty)", "registry", "list", "--tracking-uri", store).returncode == 0
    assert (
        run(
            "report (unknown experiment)",
            "report",
            "--experiment",
            "nope",
            "--tracking-uri",
            store,
            "--out",
            str(tmp_path / "report"),
        ).returncode
        == 2
    )
    assert (
        run(
            "evaluate (missing model)", "evaluate", "--model-uri", "models:/nope@champion", "--tracking-uri", store
        ).returncode
        == 2
    )
    for name, args in {
        "registry list (unreachable)": ["registry", "list"],
        "report (unreachable)": ["report", "--experiment", "x", "--out", str(tmp_path / "r2")],
        "train (unreachable)": ["train", "--model", "pop", "--dataset", "ml-100k", "--epochs", "1"],
    }.items():
        proc = run(name, *args, "--tracking-uri", dead)
        assert proc.returncode == 2 and "Cannot reach the MLflow tracking server at http://admin:***@" in proc.stderr
    fresh = tmp_path / "fresh-data"  # no raw cache: the source URL is really used, and fails
    proc = run("data prepare (source URL)", "data", "prepare", "--dataset", "ml-100k", "--source", source, data=fresh)
    assert proc.returncode == 2 and "reader:***@" in proc.stderr

    # a tracked, registered run with a password in both the store URI and the data source
    train = run(
        "train",
        "train",
        "--model",
        "gru4rec",
        "--dataset",
        "ml-100k",
        "--source",
        source,
        "--tracking-uri",
        store,
        "--epochs",
        "1",
        "--embedding-dim",
        "8",
        "--max-len",
        "10",
        "--device",
        "cpu",
        "--experiment",
        "redaction",
    )
    assert train.returncode == 0, train.stderr[-3000:]
    listed = run("registry list", "registry", "list", "--tracking-uri", store)
    assert listed.returncode == 0 and "gru4rec-ml-100k" in listed.stdout
    assert (
        run(
            "report", "report", "--experiment", "redaction", "--tracking-uri", store, "--out", str(tmp_path / "report")
        ).returncode
        == 0
    )

    leaks = {name: [s for s in (p.stdout, p.stderr) if SECRET in s] for name, p in outputs.items()}
    assert not any(leaks.values()), {k: v[0][:2000] for k, v in leaks.items() if v}
    dump = _pg_dump(plain)
    assert "gru4rec-ml-100k" in dump and "reader:***@127.0.0.1" in dump  # the run is there, its source masked
    assert SECRET not in dump
    assert (tmp_path / "mlruns").is_dir()  # a database store without a server keeps artifacts in ./mlruns
    configs = list(tmp_path.rglob("config.yaml"))
    assert len(configs) >= 2  # the run's artifact and the copy inside the registered model
    assert all("source: http://reader:***@127.0.0.1" in p.read_text() for p in configs)
    assert _files_with(tmp_path, SECRET.encode()) == []


class _BasicAuthHealth(http.server.BaseHTTPRequestHandler):
    """/health (and the API call the store check makes) answering 200 only with the expected Basic
    credentials (like a proxy in front of MLflow)."""

    expected = "Basic " + base64.b64encode(f"admin:{SECRET}5".encode()).decode()
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.seen.append(self.headers.get("Authorization", ""))
        known = self.path.split("?")[0] in ("/health", "/api/2.0/mlflow/experiments/search")
        ok = known and self.headers.get("Authorization") == self.expected
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"unauthorized")

    def log_message(self, *args):
        pass


def test_health_check_sends_uri_credentials_as_basic_auth_and_never_shows_them():
    from xlrec.errors import XlrecError
    from xlrec.platform.tracking.uri import check_reachable

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BasicAuthHealth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        check_reachable(f"http://admin:{SECRET}5@127.0.0.1:{port}")  # MLflow's client accepts such URIs
        assert _BasicAuthHealth.seen[-1] == _BasicAuthHealth.expected
        with pytest.raises(XlrecError) as err:
            check_reachable(f"http://admin:{SECRET}6@127.0.0.1:{port}/")
        assert "HTTP 401" in str(err.value) and SECRET not in str(err.value)
        assert f"http://admin:***@127.0.0.1:{port}/" in str(err.value)
    finally:
        server.shutdown()
        server.server_close()

"""Every way a run ends shows in MLflow: real `python -m xlrec` processes, real signals.

Each test trains a tiny synthetic model with a sqlite store in tmp_path (or a real `mlflow
server`), signals the process at a named point (tests/paused_xlrec.py holds it there, so the
window is hit deterministically) or once a metric shows the loop is running, and reads the
run's status and `xlrec.status` / `xlrec.failure_reason` tags from the store afterwards.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from helpers import run_xlrec, xlrec_env
from xlrec.platform.tracking.server import MlflowServer

TINY = [
    "--dataset",
    "synthetic",
    "--synthetic-users",
    "60",
    "--synthetic-items",
    "40",
    "--synthetic-mean-len",
    "12",
    "--embedding-dim",
    "8",
    "--max-len",
    "10",
    "--device",
    "cpu",
    "--no-register",
]
LONG = [
    "--epochs",
    "100000",
    "--patience",
    "100000",
]  # runs until signalled (500 epochs of TINY take ~6 s: under load the signal came later)


class Train:
    """`python -m xlrec train ...` as a background process; stderr goes to a file."""

    def __init__(self, tmp_path: Path, name: str, args: list[str], pause_at: str | None = None, **env: str):
        self.err_path = tmp_path / f"{name}.err"
        self.out_path = tmp_path / f"{name}.out"
        xlrec = [str(Path(__file__).with_name("paused_xlrec.py")), pause_at] if pause_at else ["-m", "xlrec"]
        with open(self.err_path, "w") as err, open(self.out_path, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *xlrec, "train", *args],
                cwd=tmp_path,
                env=xlrec_env(tmp_path / "data", **env),
                stdout=out,
                stderr=err,
            )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_for_line(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {text!r}:\n{self.stderr[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n{self.stderr[-3000:]}"
            time.sleep(0.2)

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)


def _runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def _xlrec(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m xlrec ARGS` in tmp_path, its data cache in tmp_path/data."""
    return run_xlrec(list(args), xlrec_env(tmp_path / "data"), cwd=tmp_path, timeout=300)


def test_signal_before_the_run_exists_ends_the_adopted_run_killed(tmp_path):
    """Under `mlflow run` the run exists before xlrec starts: a SIGTERM during startup must end it KILLED."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("adopted"), run_name="made-by-mlflow-run")
    train = Train(
        tmp_path,
        "adopted",
        [*TINY, *LONG, "--model", "gru4rec", "--tracking-uri", uri],
        MLFLOW_RUN_ID=run.info.run_id,
        pause_at="start",
    )
    train.wait_for_line("paused at start")
    train.proc.send_signal(signal.SIGTERM)
    assert train.wait() == 130
    after = client.get_run(run.info.run_id)
    assert after.info.status == "KILLED"
    assert after.data.tags["xlrec.status"] == "KILLED"
    assert after.data.tags["xlrec.failure_reason"] == "interrupted (SIGTERM)"
    assert "Traceback" not in train.stderr


def test_sigint_during_setup_and_sigterm_in_the_loop_end_killed_sigkill_is_reaped(tmp_path):
    """Three trainings at once: SIGINT while the run is being set up (after it was created),
    SIGTERM once epochs are logged, SIGKILL once epochs are logged and then `xlrec runs reap`;
    a live run and a run of another host are left alone by reap (the latter reaped only as stale)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _xlrec(tmp_path, "data", "prepare", *TINY[:6])  # one data cache for all three
    common = [*TINY, *LONG, "--model", "gru4rec", "--tracking-uri", uri]
    setup = Train(tmp_path, "setup", [*common, "--experiment", "setup"], pause_at="setup")
    loop = Train(tmp_path, "loop", [*common, "--experiment", "loop"])
    killed = Train(tmp_path, "killed", [*common, "--experiment", "killed"])
    setup.wait_for_line("paused at setup")
    for t in (loop, killed):
        t.wait_for_line("epoch   2")
    other = MlflowClient(uri).create_run(
        MlflowClient(uri).get_experiment_by_name("killed").experiment_id,
        tags={"xlrec.host": "some-other-host", "xlrec.pid": "1"},
    )

    killed.proc.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    [dead] = [r for r in _runs(uri, "killed") if r.info.run_id != other.info.run_id]
    assert dead.info.status == "RUNNING"  # nobody could close it
    reap = _xlrec(tmp_path, "runs", "reap", "--tracking-uri", uri)
    assert reap.returncode == 0, reap.stderr[-3000:]
    [live] = _runs(uri, "setup")
    verdicts = {
        rid: line
        for line in reap.stdout.splitlines()
        for rid in (dead.info.run_id, other.info.run_id, live.info.run_id)
        if rid in line
    }
    assert verdicts[dead.info.run_id].startswith("reaped")
    assert verdicts[other.info.run_id].startswith("not checkable")
    assert verdicts[live.info.run_id].startswith("alive")
    reaped = MlflowClient(uri).get_run(dead.info.run_id)
    assert reaped.info.status == "FAILED"
    assert reaped.data.tags["xlrec.status"] == "FAILED"
    assert reaped.data.tags["xlrec.failure_reason"].startswith(f"process {killed.proc.pid} on ")
    assert MlflowClient(uri).get_run(other.info.run_id).info.status == "RUNNING"
    stale = _xlrec(
        tmp_path, "runs", "reap", "--tracking-uri", uri, "--experiment", "killed", "--stale-minutes", "0.001"
    )
    assert stale.returncode == 0, stale.stderr[-3000:]
    assert MlflowClient(uri).get_run(other.info.run_id).info.status == "FAILED"

    setup.proc.send_signal(signal.SIGINT)
    loop.proc.send_signal(signal.SIGTERM)
    assert setup.wait() == 130 and loop.wait() == 130
    for t, experiment, sig in ((setup, "setup", "SIGINT"), (loop, "loop", "SIGTERM")):
        [run] = _runs(uri, experiment)
        assert run.info.status == "KILLED", (experiment, t.stderr[-2000:])
        assert run.data.tags["xlrec.status"] == "KILLED"
        assert run.data.tags["xlrec.failure_reason"] == f"interrupted ({sig})"
        assert run.data.tags["xlrec.pid"] == str(t.proc.pid)
        assert "Traceback" not in t.stderr
    [run] = _runs(uri, "loop")
    assert len(MlflowClient(uri).get_metric_history(run.info.run_id, "val_recall_at_10")) >= 2
    assert "test_recall_at_10" not in run.data.metrics


def test_nan_loss_ends_failed_with_the_epoch(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _xlrec(
        tmp_path,
        "train",
        *TINY,
        "--model",
        "sasrec",
        "--num-heads",
        "1",
        "--num-blocks",
        "1",
        "--epochs",
        "3",
        "--lr",
        "1e12",
        "--grad-clip",
        "0",
        "--tracking-uri",
        uri,
        "--experiment",
        "nan",
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    [run] = _runs(uri, "nan")
    assert run.info.status == "FAILED"
    assert run.data.tags["xlrec.status"] == "FAILED"
    assert re.search(r"loss became NaN at epoch \d+;", run.data.tags["xlrec.failure_reason"])


def test_training_process_runs_without_mlflow_telemetry(tmp_path):
    """MLflow's telemetry thread wrote into os.environ while other threads read it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = (
        "import json, os, sys, threading\n"
        "from xlrec.cli import main\n"
        f"rc = main(['train', *{TINY!r}, '--model', 'gru4rec', '--epochs', '1', '--tracking-uri', {uri!r}])\n"
        "print(json.dumps({'rc': rc, 'flag': os.environ.get('MLFLOW_DISABLE_TELEMETRY'),\n"
        "  'session': '_MLFLOW_TELEMETRY_SESSION_ID' in os.environ,\n"
        "  'threads': [t.name for t in threading.enumerate()]}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=xlrec_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["rc"] == 0 and seen["flag"] == "true" and seen["session"] is False
    assert not [t for t in seen["threads"] if "Telemetry" in t], seen["threads"]
    [run] = _runs(uri, "xlrec-synthetic")
    assert run.info.status == "FINISHED" and run.data.tags["xlrec.status"] == "completed"


def test_a_server_started_on_a_relative_sqlite_uri_serves_that_store(tmp_path, monkeypatch):
    """The server runs in its artifacts' folder; `sqlite:///mlflow.db` must still mean the caller's file."""
    monkeypatch.chdir(tmp_path)
    MlflowClient("sqlite:///mlflow.db").create_experiment("seen-by-the-server")
    with MlflowServer("sqlite:///mlflow.db", tmp_path / "elsewhere" / "artifacts", workers=1) as server:
        exp = MlflowClient(server.uri).get_experiment_by_name("seen-by-the-server")
    assert exp is not None
    assert not (tmp_path / "elsewhere" / "mlflow.db").exists()


def test_dead_tracking_server_fails_the_training_once_its_outage_allowance_is_spent(tmp_path):
    # the shipped allowance is 45 s (a restarting server is down for tens of seconds); 12 s here
    server = MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", workers=1)
    server.start()
    try:
        argv = [*TINY, *LONG, "--model", "gru4rec", "--tracking-uri", server.uri, "--store-outage-s", "12"]
        train = Train(tmp_path, "dead", argv)
        train.wait_for_line("epoch   2")
    finally:
        server.stop()
    killed_at = time.monotonic()
    rc = train.wait(timeout=300)
    waited = time.monotonic() - killed_at
    assert rc == 2, train.stderr[-3000:]
    # it trained on through the allowance (metrics kept), then gave up well within a minute
    assert 12 <= waited < 45, f"the training gave up {waited:.0f}s after the server died (allowance 12 s)"
    err = train.stderr
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("xlrec: error:")]
    assert len(errors) == 1 and "failed during epoch" in errors[0] and server.uri in errors[0]
    assert "xlrec runs reap" in errors[0]
    # the run stayed RUNNING (nobody could close it); once the store is readable, reap closes it
    store = f"sqlite:///{tmp_path / 'server.db'}"
    [run] = _runs(store, "xlrec-synthetic")
    assert run.info.status == "RUNNING"
    reap = _xlrec(tmp_path, "runs", "reap", "--tracking-uri", store)
    assert reap.returncode == 0 and MlflowClient(store).get_run(run.info.run_id).info.status == "FAILED"


# --- a stopped sweep ---------------------------------------------------------------------------


def _alive(procs: list[psutil.Process]) -> list[str]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline()[:4])}")
        except psutil.Error:
            continue
    return left


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_stopped_sweep_stops_everything_it_started_and_marks_its_runs_killed(tmp_path, sig):
    env = {k: v for k, v in xlrec_env(tmp_path / "data").items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    cmd = [
        sys.executable,
        "-m",
        "xlrec",
        "sweep",
        "--mode",
        "search",
        "--model",
        "gru4rec",
        "--dataset",
        "synthetic",
        "--trials",
        "4",
        "--epochs",
        "400",
        "--grace-period",
        "400",
        "--max-concurrent",
        "2",
        "--name",
        "stopme",
        "--set",
        "synthetic_users=60",
        "--set",
        "synthetic_items=40",
        "--set",
        "max_len=10",
        "--set",
        "embedding_dim=8",
        "--set",
        "patience=1000",
    ]
    with open(tmp_path / "sweep.err", "w") as err:
        driver = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    state = tmp_path / "ray_results" / "stopme.xlrec-sweep.json"
    deadline = time.monotonic() + 300
    while True:  # until a trial has logged an epoch
        assert driver.poll() is None, (tmp_path / "sweep.err").read_text()[-3000:]
        assert time.monotonic() < deadline, (tmp_path / "sweep.err").read_text()[-3000:]
        if state.is_file():
            uri = f"http://127.0.0.1:{json.loads(state.read_text())['server_port']}"
            trials = [r for r in _runs(uri, "xlrec-synthetic") if "xlrec.trial_id" in r.data.tags]
            if any("val_recall_at_10" in r.data.metrics for r in trials):
                break
        time.sleep(1)
    started = psutil.Process(driver.pid).children(recursive=True)
    server_pid = json.loads(state.read_text())["server_pid"]
    assert any(p.pid == server_pid for p in started)
    assert any("raylet" in " ".join(p.cmdline()) for p in started if p.is_running())
    driver.send_signal(sig)
    stopped_at = time.monotonic()
    assert driver.wait(timeout=120) == 130, (tmp_path / "sweep.err").read_text()[-3000:]
    while _alive(started) and time.monotonic() - stopped_at < 60:
        time.sleep(1)
    assert _alive(started) == []
    runs = _runs(db, "xlrec-synthetic")
    assert runs and all(r.info.status == "KILLED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    parent = [r for r in runs if r.data.tags.get("xlrec.sweep") == "parent"]
    assert len(parent) == 1 and parent[0].data.tags["xlrec.failure_reason"] == f"sweep interrupted ({sig.name})"
    assert "Traceback" not in (tmp_path / "sweep.err").read_text()

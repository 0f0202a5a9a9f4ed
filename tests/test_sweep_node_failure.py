"""A Ray worker node killed mid-trial: Tune retries the trial on the other node from its
last checkpoint, in the same MLflow run.

A real three-node Ray cluster on loopback, each node its own `ray start` process group:
a head with no CPUs (it only coordinates, so trials must run on workers) and two worker
nodes with one CPU each. The sweep driver connects with --ray-address; when the trial has
checkpointed a few epochs, every process of the node that runs it is SIGKILLed. The trial is
frozen (SIGSTOP) while the test reads its progress, so the kill always lands mid-training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from helpers import RAY, free_port, pids_using, xlrec_env

pytestmark = pytest.mark.server

EPOCHS = 15
GRID = [
    "--mode",
    "grid",
    "--models",
    "gru4rec",
    "--datasets",
    "synthetic",
    "--max-lens",
    "10",
    "--seeds",
    "1",
    "--epochs",
    str(EPOCHS),
    "--max-failures",
    "2",
    "--cpus-per-trial",
    "1",
    "--name",
    "nodefail",
    "--set",
    "synthetic_users=300",
    "--set",
    "synthetic_items=60",
    "--set",
    "synthetic_mean_len=20",
    "--set",
    "embedding_dim=16",
    "--set",
    "window_stride=0",
    "--set",
    "patience=1000",
]
# Faster failure detection than the default: a silent node is declared dead after 5 missed 1-s checks.
HEALTH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "3000",
    "RAY_health_check_failure_threshold": "5",
}


class Node:
    """One `ray start --block` process (and everything it starts) in its own session."""

    def __init__(self, args: list[str], env: dict, log: Path, ready: str):
        self.log_path = log
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while ready not in log.read_text(errors="replace"):
            assert self.proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def actors(self) -> list[psutil.Process]:
        """The Ray workers of this node that hold an actor (a trial), not idle workers or agents."""
        found = []
        for p in self.processes():
            try:
                title = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if title.startswith("ray::") and not any(w in title for w in ("IDLE", "Agent")):
                found.append(p)
        return found

    @staticmethod
    def signal_all(procs: list[psutil.Process], sig: int) -> None:
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass

    def kill(self) -> None:
        """SIGKILL every process of the node at once: the machine 'dies'."""
        procs = self.processes()
        self.signal_all(procs, signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()


@pytest.fixture
def three_node_cluster(tmp_path):
    data_dir = tmp_path / "data"
    temp_dir = tempfile.mkdtemp(prefix="xrn", dir="/tmp")  # short: Ray's socket paths are length-limited
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}
    env = xlrec_env(data_dir, **auth, **HEALTH)
    port = free_port()
    nodes = []
    try:
        nodes.append(
            Node(
                [
                    "--head",
                    f"--port={port}",
                    "--num-cpus=0",
                    "--include-dashboard=false",
                    f"--dashboard-port={free_port()}",
                    f"--ray-client-server-port={free_port()}",
                    f"--temp-dir={temp_dir}",
                ],
                env,
                tmp_path / "head.log",
                "Ray runtime started",
            )
        )
        for name in ("a", "b"):
            nodes.append(
                Node(
                    [f"--address=127.0.0.1:{port}", "--num-cpus=1"],
                    env,
                    tmp_path / f"worker-{name}.log",
                    "Ray runtime started",
                )
            )
        yield f"127.0.0.1:{port}", env, nodes[1:]
    finally:
        for node in reversed(nodes):
            node.stop()
        for pid in pids_using(temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _trial_runs(db: str) -> list:
    client = MlflowClient(db)
    exps = client.search_experiments()
    return client.search_runs([e.experiment_id for e in exps], "tags.`xlrec.trial_id` != ''")


def test_killed_worker_node_trial_resumes_elsewhere_from_checkpoint(tmp_path, three_node_cluster):
    address, env, workers = three_node_cluster
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(
        [sys.executable, "-m", "xlrec", "sweep", *GRID, "--ray-address", address],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    results = tmp_path / "ray_results"
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    victim, node_before, deadline = None, None, time.monotonic() + 600
    seen: dict = {}
    while victim is None and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
        hosts = [w for w in workers if w.actors()]
        seen["hosts"] = len(hosts)
        seen["checkpoints"] = len(list(results.glob("nodefail-*/*/checkpoint_*")))
        if len(hosts) != 1 or not seen["checkpoints"]:
            continue
        # Freeze the trial (SIGSTOP) before reading how far it got, so the node dies exactly
        # there: a kill decided on a stale reading could land after the last epoch.
        trial = hosts[0].actors()
        Node.signal_all(trial, signal.SIGSTOP)
        try:
            runs = _trial_runs(db) if (tmp_path / "mlflow.db").exists() else []
            epochs_logged = (
                len(MlflowClient(db).get_metric_history(runs[0].info.run_id, "val_recall_at_10")) if runs else 0
            )
        except Exception as exc:  # the store busy: read again on the next round
            seen["read_error"] = repr(exc)[:300]
            epochs_logged = 0
        seen["epochs_logged"] = epochs_logged
        assert epochs_logged < EPOCHS, f"the trial ran all its epochs between two readings: {seen}"
        if epochs_logged >= 3:  # a few epochs done and checkpointed (epoch 2's report returned)
            node_before = runs[0].data.tags.get("xlrec.ray_node_id")
            victim = hosts[0]
            victim.kill()
        else:
            Node.signal_all(trial, signal.SIGCONT)
    assert victim is not None, f"{json.dumps(seen)}\n{(tmp_path / 'driver.log').read_text()[-4000:]}"
    out, _ = driver.communicate(timeout=900)
    log.close()
    assert driver.returncode == 0, (tmp_path / "driver.log").read_text()[-6000:]
    summary = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    assert summary["trials_done"] == 1 and summary["trials_failed"] == 0, summary

    runs = _trial_runs(db)
    assert len(runs) == 1, [r.info.run_id for r in runs]  # the retry continued the same MLflow run
    run = runs[0]
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert node_before and tags["xlrec.ray_node_id"] != node_before  # it finished on the other node
    resumed_from = int(tags["xlrec.resumed_from_epoch"])
    assert 1 <= resumed_from < EPOCHS  # from a checkpoint, not from scratch
    # every epoch's validation metric is in the history, the killed attempt's and the retry's
    history = MlflowClient(db).get_metric_history(run.info.run_id, "val_recall_at_10")
    assert {m.step for m in history} == set(range(1, EPOCHS + 1))
    assert run.data.metrics["epochs_run"] == EPOCHS
    assert "test_recall_at_10" in run.data.metrics
    # the surviving worker is the only node that still holds processes of the cluster's workers
    assert not victim.processes()

"""A tracking server that restarts mid-sweep: stopped twice while a grid sweep's trials train on it
(PostgreSQL store), each time for longer than an epoch but within `store_outage_s`.

Every trial must finish and its run end FINISHED, with every per-epoch point it trained (kept while
the server was down, sent once it answered: expected = the points of the epochs each run ran,
found = what MLflow holds), one registered version each, and the parent FINISHED. The figures are
printed; RELIABILITY.md quotes a heavier run (`XLREC_OUTAGE_TRIALS=16 XLREC_OUTAGE_S=30
XLREC_OUTAGE_CPUS=0.125 XLREC_OUTAGE_EPOCHS=60`: all 16 trials training through both outages).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from helpers import xlrec_env
from mlflow_server import PostgresMlflowServer
from xlrec.platform.tracking.server import MlflowServer

pytestmark = [pytest.mark.server, pytest.mark.slow]

TRIALS = int(os.environ.get("XLREC_OUTAGE_TRIALS", "2"))
DOWN_S = float(os.environ.get("XLREC_OUTAGE_S", "8"))
EPOCHS = int(os.environ.get("XLREC_OUTAGE_EPOCHS", "110"))  # ~1 min a trial here, both outages ~40 s
CPUS_PER_TRIAL = os.environ.get("XLREC_OUTAGE_CPUS", "1")  # 0.125: 16 trials train at once on 2 cores
PER_EPOCH = ("train_loss", "val_recall_at_10", "val_ndcg_at_10", "val_mrr_at_10", "lr", "epoch_time_s")


def _epochs_logged(client: MlflowClient, experiment: str) -> int:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    runs = client.search_runs([exp.experiment_id])  # the parent has no epoch_time_s
    return sum(int(r.data.metrics.get("epoch_time_s", 0) > 0) for r in runs)


def test_trials_ride_out_a_restarting_tracking_server(tmp_path):
    server = PostgresMlflowServer(tmp_path / "server", workers=2)
    server.start(timeout=120)
    try:
        _ride_out(server, tmp_path)
    finally:
        server.stop()  # and its database


def _ride_out(server: PostgresMlflowServer, tmp_path) -> None:
    client = MlflowClient(server.uri)
    seeds = ",".join(str(s) for s in range(1, TRIALS + 1))
    cmd = [sys.executable, "-m", "xlrec", "sweep", "--mode", "grid", "--models", "gru4rec", "--datasets", "synthetic"]
    cmd += ["--max-lens", "10", "--seeds", seeds, "--epochs", str(EPOCHS), "--cpus-per-trial", CPUS_PER_TRIAL]
    cmd += ["--tracking-uri", server.uri, "--experiment", "outage", "--storage-path", str(tmp_path / "ray")]
    cmd += ["--set", "embedding_dim=8", "--set", "patience=1000", "--set", f"store_outage_s={DOWN_S + 40}"]
    cmd += ["--set", "synthetic_users=300", "--set", "synthetic_items=60", "--set", "synthetic_mean_len=12"]
    env = xlrec_env(tmp_path / "data", RAY_USAGE_STATS_ENABLED="0")
    with open(tmp_path / "sweep.err", "w") as err:
        sweep = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    outages = []
    try:
        for _ in range(2):
            deadline = time.monotonic() + 300
            while _epochs_logged(client, "outage") == 0 or len(outages) and time.monotonic() < outages[-1][1] + 5:
                assert sweep.poll() is None, (tmp_path / "sweep.err").read_text()[-3000:]
                assert time.monotonic() < deadline, "no trial logged an epoch"
                time.sleep(0.5)
            down = time.monotonic()
            MlflowServer.stop(server)  # the server only: its database stays
            time.sleep(DOWN_S)
            server.start(timeout=120)
            outages.append((down, time.monotonic()))
        out, _ = sweep.communicate(timeout=900)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    stderr = (tmp_path / "sweep.err").read_text()
    assert sweep.returncode == 0, stderr[-4000:]
    summary = json.loads(out.strip().splitlines()[-1])
    exp = client.get_experiment_by_name("outage")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("xlrec.sweep") == "parent"]
    trials = [r for r in runs if r is not parent and r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    expected = found = 0
    for run in trials:
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status, run.data.tags)
        epochs = int(run.data.metrics["epochs_run"])
        for key in PER_EPOCH:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            expected += epochs
            found += len(set(steps) & set(range(1, epochs + 1)))
            assert steps == list(range(1, epochs + 1)), (run.info.run_name, key, steps)
    versions = client.search_model_versions("name='gru4rec-synthetic'")
    downs = [round(b - a) for a, b in outages]
    print(
        f"\n[outage] {TRIALS} trials, 2 outages of {DOWN_S:.0f} s (server down {downs} s): "
        f"{found}/{expected} per-epoch points, {len(versions)} versions, parent {parent.info.status}"
    )
    assert len(trials) == TRIALS and summary["trials_done"] == TRIALS
    assert found == expected and parent.info.status == "FINISHED"
    assert len(versions) == TRIALS

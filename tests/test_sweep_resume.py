"""A sweep driver killed with SIGKILL and restarted with --resume finishes without duplicates.

The sweep reads real ML-100K through a relative `XLREC_DATA_MIRROR=../mirror`, as the README's
main job does: the path means the driver's directory though Ray runs each trial in its own one,
and the resumed driver must resolve it the same way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRID = [
    "--mode",
    "grid",
    "--models",
    "gru4rec",
    "--datasets",
    "ml-100k",
    "--max-lens",
    "5,10",
    "--seeds",
    "1",
    "--epochs",
    "2",
    "--max-concurrent",
    "1",
    "--name",
    "resumable",
    "--set",
    "embedding_dim=16",
    "--set",
    "window_stride=0",
]


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
    env.update({"XLREC_DATA_DIR": str(tmp_path / "data"), "XLREC_DATA_MIRROR": "../mirror", "PYTHONUNBUFFERED": "1"})
    return env


def _finished_children(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exps = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in exps], "tags.`xlrec.trial_id` != ''")
    return runs


def test_killed_driver_resumes_without_duplicating_trials(tmp_path, shared_data):
    (tmp_path / "mirror").symlink_to(shared_data)
    cwd = tmp_path / "project"  # the driver's directory; ../mirror is the mirror
    cwd.mkdir()
    env = _env(tmp_path)
    cmd = [sys.executable, "-m", "xlrec", "sweep", *GRID]
    log = open(cwd / "first.log", "w")
    driver = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state = cwd / "ray_results" / "resumable.xlrec-sweep.json"
    deadline = time.monotonic() + 600
    killed = False
    while time.monotonic() < deadline and driver.poll() is None:
        time.sleep(2)
        if not state.is_file():
            continue
        port = json.loads(state.read_text())["server_port"]
        runs = _finished_children(f"http://127.0.0.1:{port}")
        if any(r.info.status == "FINISHED" for r in runs):
            os.kill(driver.pid, signal.SIGKILL)  # the driver only; Ray's processes share its fate
            driver.wait()
            killed = True
            break
    assert killed, (cwd / "first.log").read_text()[-3000:]
    db = f"sqlite:///{cwd / 'mlflow.db'}"  # the killed driver's server died with it; read the store itself
    before = {r.data.tags["xlrec.trial_id"]: r.info.status for r in _finished_children(db)}
    assert 1 <= sum(s == "FINISHED" for s in before.values()) < 2

    proc = subprocess.run(cmd + ["--resume"], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["trials_done"] == 2 and summary["trials_failed"] == 0
    # the closing line counts the whole sweep, the trial that ended under the killed driver too
    assert "sweep done in " in proc.stderr and ": 2 finished, 0 pruned, 0 failed; best " in proc.stderr
    runs = _finished_children(db)
    trial_ids = [r.data.tags["xlrec.trial_id"] for r in runs]
    assert len(trial_ids) == len(set(trial_ids)) == 2, trial_ids  # no trial logged twice
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags.get("mlflow.parentRunId") == summary["parent_run_id"] for r in runs)
    # the trials finished before the kill kept their results (same run, same metrics), logged once
    from mlflow import MlflowClient

    client = MlflowClient(db)
    for r in runs:
        assert "xlrec.failure_reason" not in r.data.tags  # a reaped trial that resumed clears it
        if before.get(r.data.tags["xlrec.trial_id"]) == "FINISHED":
            assert "test_recall_at_10" in r.data.metrics
            assert len(client.get_metric_history(r.info.run_id, "test_recall_at_10")) == 1
            assert [m.step for m in client.get_metric_history(r.info.run_id, "val_recall_at_10")] == [1, 2]
    # the resumed driver stopped its server: nothing is left listening
    from xlrec.platform.tracking.server import health

    assert health(f"http://127.0.0.1:{json.loads(state.read_text())['server_port']}") is None


def test_a_killed_grouped_trial_resumes_each_seed_in_its_own_run(tmp_path, shared_data):
    # resources.group_seeds: one trial trains seeds 1 and 2 in threads; the driver is killed once the
    # trial's checkpoint holds both seeds' states, mid-training. Resumed, each seed continues in its
    # own run (never a second one), and each ends with its results logged once.
    (tmp_path / "mirror").symlink_to(shared_data)
    cwd = tmp_path / "project"
    cwd.mkdir()
    env = _env(tmp_path)
    grid = [a for a in GRID if a not in ("5,10",)]
    grid[grid.index("--max-lens") + 1 : grid.index("--max-lens") + 1] = ["5"]
    grid[grid.index("--seeds") + 1] = "1,2"
    grid[grid.index("--epochs") + 1] = "6"
    cmd = [sys.executable, "-m", "xlrec", "sweep", *grid, "--group-seeds"]
    log = open(cwd / "first.log", "w")
    driver = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    killed = False
    while time.monotonic() < deadline and driver.poll() is None:
        time.sleep(1)
        both = [p for p in (cwd / "ray_results").glob("*/*/checkpoint_*") if {"seed-1.pt", "seed-2.pt"} <= _names(p)]
        if both:
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait()
            killed = True
            break
    assert killed, (cwd / "first.log").read_text()[-3000:]
    db = f"sqlite:///{cwd / 'mlflow.db'}"
    before = _finished_children(db)
    assert len(before) == 2 and not any(r.info.status == "FINISHED" for r in before)

    proc = subprocess.run(cmd + ["--resume"], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["trials_done"], summary["trials_failed"]) == (2, 0)
    runs = _finished_children(db)
    assert {r.info.run_id for r in runs} == {r.info.run_id for r in before}  # the same two runs
    (group,) = {r.data.tags["xlrec.trial_group"] for r in runs}
    assert {r.data.tags["xlrec.trial_id"] for r in runs} == {f"{group}-s1", f"{group}-s2"}
    from mlflow import MlflowClient

    client = MlflowClient(db)
    for r in runs:
        assert r.info.status == "FINISHED" and "xlrec.failure_reason" not in r.data.tags
        assert len(client.get_metric_history(r.info.run_id, "test_recall_at_10")) == 1
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "val_recall_at_10")]
        assert steps[-1] == r.data.metrics["epochs_run"] and set(steps) == set(range(1, steps[-1] + 1))


def _names(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}

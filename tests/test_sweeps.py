"""`xlrec sweep` end to end: real Ray Tune, a real local `mlflow server`, a real Optuna RDB study.

Every sweep runs as its own `python -m xlrec sweep` process in a fresh working directory, so
Ray's and MLflow's global state never leak between tests. Afterwards the tests read what the
sweep left behind: ./mlflow.db (the sweep's server is gone, so the SQL store is read directly),
./mlartifacts (the served artifacts) and ./optuna.db.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import optuna
import pytest
import yaml

from helpers import (
    RAY,
    TINY,
    SweepOutcome,
    assert_nested_and_closed,
    free_port,
    isolate_sweep,
    pids_using,
    sweep,
    xlrec_env,
)

pytestmark = pytest.mark.server


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_sweep(tmp_path, monkeypatch)


# --- 1 + 2: search mode on a Ray head with two logical GPUs --------------------------------------


@pytest.fixture(scope="module")
def gpu_ray_cluster(tmp_path_factory):
    """`ray start --head` with 2 logical GPUs on a free port, in its own temp dir and process group."""
    data_dir = tmp_path_factory.mktemp("ray-data")
    temp_dir = tempfile.mkdtemp(prefix="xrt", dir="/tmp")  # short: Ray's socket paths are length-limited
    log_path = tmp_path_factory.mktemp("ray-log") / "ray-start.log"
    port = free_port()
    log = open(log_path, "wb")
    # Token authentication with this cluster's own token (a driver that names --ray-address must opt in
    # with RAY_AUTH_MODE=token; a `ray start` cluster turns it on whenever ~/.ray/auth_token exists).
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}
    # With --ray-address the driver passes no runtime_env: the workers get XLREC_DATA_DIR from here.
    proc = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=2",
            "--include-dashboard=false",
            f"--dashboard-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env=xlrec_env(data_dir, **auth),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while b"Ray runtime started" not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", data_dir, auth
    finally:
        # Only this cluster's processes: its process group, then anything still using its temp dir.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid in pids_using(temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def search_sweep(gpu_ray_cluster, tmp_path_factory) -> SweepOutcome:
    """4 Optuna trials of gru4rec (architecture searched: embedding_dim is not fixed), a GPU's share
    chosen by `--gpus-per-trial auto` (one at a time on two logical GPUs: a whole GPU each).

    One trial at a time, so TPE (seed 4) samples the same settings and ASHA (grace period 1,
    reduction factor 2) sees the same reports in the same order on every run. gru4rec has no
    attention heads, so the search samples its width directly (16..128), blocks, lr and dropout.
    The first, second and fourth trials train all 3 epochs; the third falls below the median at
    epoch 1 and is pruned. Three finished, one pruned."""
    address, data_dir, auth = gpu_ray_cluster
    cwd = tmp_path_factory.mktemp("search")
    proc = sweep(
        cwd,
        "--mode",
        "search",
        "--model",
        "gru4rec",
        "--dataset",
        "synthetic",
        "--trials",
        "4",
        "--epochs",
        "3",
        "--grace-period",
        "1",
        "--seed",
        "4",
        *TINY,
        "--set",
        "max_len=10",
        "--set",
        "batch_size=8",
        "--max-concurrent",
        "1",
        "--ray-address",
        address,
        "--gpus-per-trial",
        "auto",
        "--cpus-per-trial",
        "0.5",
        data_dir=data_dir,
        env=auth,
    )
    return SweepOutcome(cwd, proc)


def test_search_nests_every_trial_under_one_finished_parent(search_sweep):
    out = search_sweep
    assert_nested_and_closed(out, 4)
    s = out.summary
    in_order = sorted(out.children, key=lambda c: c.info.start_time)  # in the order they ran
    assert (s["mode"], s["trials_done"], s["trials_pruned"], s["trials_failed"]) == ("search", 3, 1, 0)
    pruned = [c for c in in_order if c.info.status == "KILLED"]
    finished = [c for c in in_order if c.info.status == "FINISHED"]
    for child in finished:  # trained all epochs and was evaluated on the test split
        assert child.data.metrics["epochs_run"] == 3
        assert 0.0 <= child.data.metrics["test_recall_at_10"] <= 1.0
    assert [c.data.tags.get("xlrec.pruned_after_epoch") for c in pruned] == ["1"]
    assert in_order.index(pruned[0]) == 2  # the third trial
    for child in pruned:  # pruned, which is not a failure
        assert child.info.status == "KILLED"
        assert (child.data.tags["xlrec.pruned"], child.data.tags["xlrec.status"]) == ("true", "pruned")
        assert "xlrec.failure_reason" not in child.data.tags
        assert "test_recall_at_10" not in child.data.metrics


def test_search_logs_trials_table_and_optuna_plots_to_the_parent(search_sweep):
    out = search_sweep
    trials = out.parent_csv("trials.csv")
    assert len(trials) == 4
    assert set(trials["mlflow_run_id"]) == {c.info.run_id for c in out.children}
    status_of = {c.info.run_id: c.info.status for c in out.children}
    for row in trials.itertuples():
        assert {"FINISHED": "FINISHED", "PRUNED": "KILLED"}[row.status] == status_of[row.mlflow_run_id]
        assert row.embedding_dim in (16, 32, 64, 128)  # gru4rec has no heads: it searches the widths directly
    best = out.summary["best_trial"]
    finished = trials[trials["status"] == "FINISHED"]
    assert best["val_recall_at_10"] == pytest.approx(finished["val_recall_at_10"].max())
    plots = out.artifact_dir(out.parent) / "optuna"
    for name in ("optimization_history", "parallel_coordinate", "intermediate_values"):
        png = plots / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_search_study_persists_every_trial_and_samples_only_the_models_own_settings(search_sweep):
    out = search_sweep
    study = out.study()
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    states = [t.state for t in study.trials]
    assert len(states) == 4
    assert states.count(optuna.trial.TrialState.COMPLETE) == out.summary["trials_done"]
    assert states.count(optuna.trial.TrialState.PRUNED) == out.summary["trials_pruned"]
    # every child trained exactly what its study trial sampled; gru4rec has no attention heads, so
    # neither heads nor the head-width helper are sampled for it (nor logged: a run logs its own
    # family's settings)
    sampled = {repr(t.params["lr"]): t.params for t in study.trials}
    for child in out.children:
        p = child.data.params
        t = sampled.pop(p["lr"])
        assert set(t) == {"embedding_dim", "num_blocks", "lr", "dropout"}
        assert (int(p["embedding_dim"]), int(p["num_blocks"])) == (t["embedding_dim"], t["num_blocks"])
        assert "num_heads" not in p
        assert float(p["dropout"]) == pytest.approx(t["dropout"])
        assert int(p["max_len"]) == 10  # fixed with --set, not searched
    assert not sampled
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert study.best_value == pytest.approx(max(t.value for t in completed))
    assert study.best_value == pytest.approx(out.summary["best_trial"]["val_recall_at_10"])


def test_search_registers_versions_and_points_champion_at_the_best(search_sweep):
    out = search_sweep
    name = "gru4rec-synthetic"
    versions = out.client.search_model_versions(f"name='{name}'")
    finished = {c.info.run_id for c in out.children if c.info.status == "FINISHED"}
    assert {v.run_id for v in versions} == finished  # pruned trials register nothing
    champion = out.client.get_model_version_by_alias(name, "champion")
    assert out.summary["champion"] == {"name": name, "version": int(champion.version)}
    best = max(float(v.tags["val_recall_at_10"]) for v in versions)
    assert float(champion.tags["val_recall_at_10"]) == pytest.approx(best)
    assert best == pytest.approx(out.summary["best_trial"]["val_recall_at_10"], abs=1e-9)


def test_gpu_trials_each_get_one_logical_gpu(search_sweep):
    out = search_sweep
    # auto, resolved once Ray was up: one trial at a time over the cluster's two GPUs
    assert out.parent.data.params["resources.gpus_per_trial"] == "1.0"
    assert out.parent.data.params["resources.gpus_per_trial_auto"] == "True"
    assert "gpus_per_trial auto: 1 trials at once over 2 GPU(s), up to 1 per GPU, 1 GPU each" in out.proc.stderr
    logged = yaml.safe_load((out.artifact_dir(out.parent) / "sweep.yaml").read_text())
    assert logged["resources"]["gpus_per_trial"] == "auto"  # re-run elsewhere, it spreads over that cluster
    for child in out.children:
        # Ray gives each trial one logical GPU of its own; on a machine without CUDA the trial
        # trains on the CPU
        assert child.data.tags["cuda_visible_devices"] in ("0", "1")
        assert child.data.params["resolved_device"] == "cpu"


# --- 3: the paper's grid -------------------------------------------------------------------------


# A grid's combinations, its nested runs and Table 4: test_report_book.py (on its grid fixture).


# --- 4: faults -----------------------------------------------------------------------------------


def test_diverging_trials_are_failed_in_mlflow_and_the_study_and_the_sweep_still_reports(tmp_path):
    # lr=1e37 without clipping: the loss is finite in epoch 1 and overflows in epoch 2 (gru4rec, dim 16).
    proc = sweep(
        tmp_path,
        "--mode",
        "search",
        "--model",
        "gru4rec",
        "--dataset",
        "synthetic",
        "--trials",
        "2",
        "--epochs",
        "3",
        *TINY,
        "--set",
        "max_len=10",
        "--set",
        "embedding_dim=16",
        "--set",
        "lr=1e37",
        "--set",
        "grad_clip=0",
    )
    out = SweepOutcome(tmp_path, proc)
    assert_nested_and_closed(out, 2)
    s = out.summary
    assert (s["trials_failed"], s["trials_done"], s["trials_pruned"]) == (2, 0, 0)
    assert s["best_trial"] is None and s["champion"] is None
    for child in out.children:
        assert child.info.status == "FAILED"
        assert child.data.params["lr"] == "1e+37"  # a --set value is not overridden by the search space
        assert "Training loss became" in child.data.tags["xlrec.failure_reason"]
    failed = re.findall(r"^\[xlrec\] trial (\d)/2 failed \(TrainingDiverged: Training loss became", proc.stderr, re.M)
    assert sorted(failed) == ["1", "2"], proc.stderr[-4000:]
    trials = out.parent_csv("trials.csv")
    assert list(trials["status"]) == ["FAILED", "FAILED"]
    assert trials["error"].str.contains("TrainingDiverged").all()
    study = out.study()
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert all("lr" not in t.params for t in study.trials)
    assert out.client.search_registered_models() == []


# --- 5: bad input --------------------------------------------------------------------------------


def test_unreachable_tracking_server_fails_fast_without_traceback(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        proc = sweep(
            tmp_path,
            "--model",
            "gru4rec",
            "--dataset",
            "synthetic",
            "--trials",
            "2",
            "--tracking-uri",
            f"http://127.0.0.1:{port}",
            *TINY,
        )
    assert proc.returncode != 0
    assert "Cannot reach" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""
    assert not any((tmp_path / p).exists() for p in ("mlflow.db", "optuna.db", "ray_results"))


@pytest.mark.parametrize(
    "bad, named",
    [(["--source", "{tmp}/no-such-mirror"], "no-such-mirror"), (["--set", "no_such_setting=1"], "no_such_setting")],
)
def test_bad_data_location_or_setting_fails_before_anything_starts(tmp_path, bad, named):
    args = [a.replace("{tmp}", str(tmp_path)) for a in bad]
    proc = sweep(
        tmp_path,
        "--mode",
        "grid",
        "--models",
        "gru4rec",
        "--datasets",
        "ml-100k",
        "--max-lens",
        "10",
        "--seeds",
        "1",
        *args,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("xlrec: error: ") and "Traceback" not in proc.stderr
    assert named in proc.stderr
    assert proc.stdout.strip() == ""
    assert not any((tmp_path / p).exists() for p in ("mlflow.db", "optuna.db", "ray_results", "mlartifacts"))


def test_unknown_mode_is_refused_before_anything_starts(tmp_path):
    proc = sweep(tmp_path, "--mode", "bogus")
    assert proc.returncode == 2
    assert "--mode must be search or grid, got 'bogus'" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def test_ray_cluster_refusing_the_driver_gives_one_clean_error(gpu_ray_cluster, tmp_path):
    address, data_dir, _ = gpu_ray_cluster  # no RAY_AUTH_MODE=token here: the cluster rejects the driver
    # Ray retries a refused connection once a second for 20 s by default; 2 tries show the same error
    proc = sweep(
        tmp_path,
        "--model",
        "gru4rec",
        "--dataset",
        "synthetic",
        "--trials",
        "2",
        "--epochs",
        "2",
        "--ray-address",
        address,
        *TINY,
        data_dir=data_dir,
        env={"RAY_gcs_server_port_wait_time_s": "2"},
    )
    assert proc.returncode != 0
    assert proc.stderr.count("xlrec: error: Cannot connect to the Ray cluster at " + address) == 1
    assert "RAY_AUTH_MODE=token" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "optuna.db").exists()

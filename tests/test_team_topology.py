"""The team topology, for real and without containers: every service its own process on loopback.

- PostgreSQL (127.0.0.1:5432): two throwaway databases, MLflow's backend store and the Optuna study.
- An S3-compatible object store: moto's server (`moto_server`) with one bucket.
- `mlflow server` on the PostgreSQL database, artifacts proxied (`--serve-artifacts`) into the bucket:
  the trials need no S3 credentials, only the server has them.
- A two-node Ray cluster: `ray start --head` and a second `ray start --address=...` (1 CPU each),
  token authentication on, both nodes under the test's own HOME and temp dir.
- The sweep submitted as a Ray job (`ray job submit ... -- xlrec sweep ...`) against all of them,
  without --working-dir (two nodes on one host: see the comment at the submit).

Then the runs, their artifacts in the bucket, the study in PostgreSQL and the registry's champion are
checked, and everything is stopped: Ray's processes by their process groups, the test's temp dir and
HOME (never `ray stop`, which would stop other tests' clusters too), the servers by their process
groups, the databases dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import optuna
import psutil
import pytest
from mlflow import MlflowClient

from helpers import RAY, free_port, pids_using, xlrec_env
from mlflow_server import create_database, drop_database
from xlrec.platform.tracking.server import health, stop_process_group

pytestmark = [pytest.mark.server, pytest.mark.slow]

BIN = Path(sys.executable).parent
TRIALS = 3
SWEEP = [
    "--mode",
    "search",
    "--model",
    "gru4rec",
    "--dataset",
    "synthetic",
    "--trials",
    str(TRIALS),
    "--epochs",
    "2",
    "--seed",
    "3",
    "--cpus-per-trial",
    "1",
    "--experiment",
    "team-topology",
    "--set",
    "synthetic_users=80",
    "--set",
    "synthetic_items=40",
    "--set",
    "synthetic_mean_len=12",
    "--set",
    "embedding_dim=16",
    "--set",
    "max_len=10",
    "--set",
    "window_stride=0",
]
# dummy credentials: moto accepts any
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
WAIT_S = 240  # any one service coming up, on a loaded 2-core machine


def _wait(what: str, ready, proc: subprocess.Popen, log: Path, timeout: float = WAIT_S) -> None:
    """Poll `ready()` until true; fail naming `what`, with the log's tail, when `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        assert proc.poll() is None, f"{what} exited with {proc.returncode}:\n{tail}"
        assert time.monotonic() < deadline, f"{what} not ready within {timeout:.0f}s:\n{tail}"
        time.sleep(0.5)


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    """A service in its own session (process group): stopping it stops all it started, and only that."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at url (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _kill_all(pids) -> None:
    procs = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            p.send_signal(signal.SIGKILL)
            procs.append(p)
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


def _processes_with_home(home: Path) -> list[int]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.status() != psutil.STATUS_ZOMBIE and p.environ().get("HOME") == str(home):
                found.append(p.pid)
        except psutil.Error:
            pass
    return found


# --- the services ------------------------------------------------------------------------------


@pytest.fixture
def databases():
    """Two throwaway PostgreSQL databases: MLflow's backend store and the Optuna study storage."""
    uris = []
    try:
        uris.append(create_database("xlrec_team_mlflow"))
        uris.append(create_database("xlrec_team_optuna"))
        yield tuple(uris)
    finally:
        for uri in uris:
            drop_database(uri)


@pytest.fixture
def s3(tmp_path):
    """moto's S3 server on a free loopback port and a bucket in it: (endpoint URL, bucket)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path / "moto.log"
    proc = _start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], {**os.environ, **AWS}, log)
    try:
        _wait("moto_server", lambda: _answers(endpoint + "/moto-api/"), proc, log)
        bucket = f"xlrec-team-{uuid.uuid4().hex[:8]}"
        _s3_client(endpoint).create_bucket(Bucket=bucket)
        yield endpoint, bucket
    finally:
        stop_process_group(proc.pid, timeout=10)
        proc.wait(timeout=10)


def _s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS["AWS_DEFAULT_REGION"],
    )


@pytest.fixture
def tracking_server(tmp_path, databases, s3):
    """`mlflow server` on the PostgreSQL database with its artifacts proxied into the bucket: its URL."""
    endpoint, bucket = s3
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        databases[0],
        "--artifacts-destination",
        f"s3://{bucket}/mlflow",
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        # a worker still importing mlflow on a loaded machine must not be restarted for a missed ping
        "--uvicorn-opts",
        "--timeout-worker-healthcheck 60",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(AWS, MLFLOW_S3_ENDPOINT_URL=endpoint)
    log = tmp_path / "mlflow-server.log"
    proc = _start(cmd, env, log)
    try:
        _wait("mlflow server", lambda: health(uri) == 200, proc, log)  # a first start migrates the schema
        yield uri
    finally:
        stop_process_group(proc.pid, timeout=20)
        proc.wait(timeout=10)


@pytest.fixture
def ray_cluster(tmp_path):
    """A head node and a second node (1 CPU each) on loopback, token authentication on.

    Yields (GCS address, dashboard URL, the environment of a client of this cluster). Both nodes run
    with the test's HOME and temp dir, so teardown finds every process of this cluster, and only those."""
    home = tmp_path / "home"
    home.mkdir()
    temp_dir = tempfile.mkdtemp(prefix="xrt", dir="/tmp")  # short: Ray's socket paths are length-limited
    token = uuid.uuid4().hex + uuid.uuid4().hex
    env = xlrec_env(
        tmp_path / "data",
        HOME=str(home),
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",  # the job's entrypoint finds the venv's `xlrec`
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
    )
    port, dashboard_port = free_port(), free_port()
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    common = ["start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head_cmd = [
        RAY,
        *common,
        "--head",
        f"--port={port}",
        "--num-cpus=1",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        # Ray's other fixed ports are taken where another Ray runs (other tests): free ones
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--temp-dir={temp_dir}",
    ]
    worker_cmd = [
        RAY,
        *common,
        f"--address=127.0.0.1:{port}",
        "--num-cpus=1",
        f"--dashboard-agent-listen-port={free_port()}",
    ]
    nodes: list[subprocess.Popen] = []
    try:
        for name, cmd in (("head", head_cmd), ("worker", worker_cmd)):
            log = tmp_path / f"ray-{name}.log"
            nodes.append(_start(cmd, env, log))
            _wait(
                f"ray start ({name})",
                lambda log=log: "Ray runtime started" in log.read_text(errors="replace"),
                nodes[-1],
                log,
            )
        yield f"127.0.0.1:{port}", dashboard, env
    finally:
        for node in reversed(nodes):  # both at once, then one shared wait: not 15 s per node
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for node in nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(timeout=max(0.1, deadline - time.monotonic()))
        for _ in range(3):  # again, for a worker a raylet started while the first round ran
            leftovers = set(pids_using(temp_dir)) | set(_processes_with_home(home))
            if not leftovers:
                break
            _kill_all(leftovers)
        shutil.rmtree(temp_dir, ignore_errors=True)


# --- the test ----------------------------------------------------------------------------------


def _alive_nodes(address: str, env: dict) -> list[dict]:
    script = (
        f"import json, ray; ray.init(address={address!r}, log_to_driver=False); "
        "print(json.dumps([{'id': n['NodeID'], 'cpus': n['Resources'].get('CPU', 0)} for n in ray.nodes() "
        "if n['Alive']]))"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _submit(dashboard: str, job_id: str, runtime_env: dict, tracking_uri: str, study_storage: str, results: Path):
    """`ray job submit ... -- xlrec sweep ...`: it blocks, following the job's log, until the job ends."""
    return [
        RAY,
        "job",
        "submit",
        "--address",
        dashboard,
        "--submission-id",
        job_id,
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        "xlrec",
        "sweep",
        *SWEEP,
        "--tracking-uri",
        tracking_uri,
        "--study-storage",
        study_storage,
        "--storage-path",
        str(results),
    ]


def test_sweep_as_ray_job_on_two_nodes_with_postgres_s3_and_mlflow_server(
    tmp_path, databases, s3, tracking_server, ray_cluster
):
    _, study_storage = databases
    endpoint, bucket = s3
    address, dashboard, env = ray_cluster

    # the cluster: two live nodes, a CPU each
    deadline = time.monotonic() + WAIT_S
    while len(nodes := _alive_nodes(address, env)) < 2 and time.monotonic() < deadline:
        time.sleep(2)
    assert len(nodes) == 2 and [n["cpus"] for n in nodes] == [1, 1], nodes
    # `ray status` reads the autoscaler's view, refreshed every few seconds: on a loaded machine it
    # may list the second node a moment after the GCS counts it alive
    while True:
        status = subprocess.run(
            [RAY, "status", "--address", address], env=env, capture_output=True, text=True, timeout=120
        )
        assert status.returncode == 0, status.stdout + status.stderr
        listed = all(n["id"] in status.stdout for n in nodes)  # both nodes listed as active
        if listed or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert listed, status.stdout

    # The sweep as a Ray job. No --working-dir: with two nodes on one host both raylets share the
    # session's runtime_resources/, and the job's uploaded working directory is deleted under the
    # running driver (Tuner.fit then fails in os.getcwd(); ../shared/FIELD-NOTES.md). xlrec is
    # importable on both nodes from the venv they share, and the entrypoint finds `xlrec` on PATH.
    runtime_env = {"env_vars": {"XLREC_DATA_DIR": str(tmp_path / "data")}}
    deadline = time.monotonic() + WAIT_S
    while True:
        job_id = f"xlrec-team-{uuid.uuid4().hex[:8]}"
        submit = _submit(dashboard, job_id, runtime_env, tracking_server, study_storage, tmp_path / "ray_results")
        proc = subprocess.run(submit, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        out = proc.stdout + proc.stderr
        # the head's job agent still starting: submit again
        if "No available agent" not in out or time.monotonic() > deadline:
            break
        time.sleep(5)
    if proc.returncode != 0 or f"Job '{job_id}' succeeded" not in out:
        logs = subprocess.run(
            [RAY, "job", "logs", "--address", dashboard, job_id], env=env, capture_output=True, text=True, timeout=120
        )
        pytest.fail(
            f"the sweep job did not succeed (exit {proc.returncode}):\n{out[-6000:]}\n"
            f"--- ray job logs ---\n{(logs.stdout + logs.stderr)[-6000:]}"
        )
    summary = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{") and '"parent_run_id"' in ln][-1])
    assert summary["trials_done"] + summary["trials_pruned"] == TRIALS and summary["trials_failed"] == 0, summary

    # the runs in the tracking server
    client = MlflowClient(tracking_server)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == TRIALS
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert {c.info.status for c in children} <= {"FINISHED", "KILLED"} and len(finished) == summary["trials_done"] >= 1
    for run in finished:
        assert {"test_recall_at_10", "test_ndcg_at_10"} <= set(run.data.metrics), run.data.metrics
    # the trials ran on the cluster's nodes, on both: the first two start together (two CPUs, one trial each)
    # and a node has room for one; a later trial may reuse either's actor
    assert {c.data.tags["xlrec.ray_node_id"] for c in children} == {n["id"] for n in nodes}

    # their artifacts are in the bucket, written by the server (the nodes have no S3 credentials)
    keys = []
    for page in _s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="mlflow/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    for run in [parent, *children]:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    for run in finished:
        mine = [k for k in keys if f"/{run.info.run_id}/artifacts/" in k]
        assert any(k.endswith("/history.csv") for k in mine), (run.info.run_id, keys)
        assert any(k.endswith("/config.yaml") for k in mine), (run.info.run_id, keys)
    assert any(k.endswith("/trials.csv") and f"/{parent.info.run_id}/" in k for k in keys), keys
    assert any(k.endswith(".safetensors") for k in keys), keys  # the logged models' weights

    # the Optuna study in PostgreSQL
    name = f"{parent.data.tags['xlrec.sweep_name']}-{parent.info.run_id[:8]}"
    assert name in optuna.study.get_all_study_names(study_storage)
    study = optuna.load_study(study_name=name, storage=study_storage)
    assert len(study.trials) == TRIALS
    states = [t.state for t in study.trials]
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}, states
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 1

    # the registry's champion is the best trial's version
    champion = summary["champion"]
    best_run = parent.data.tags["xlrec.best_trial_run_id"]
    mv = client.get_model_version_by_alias(champion["name"], "champion")
    assert int(mv.version) == champion["version"] and mv.run_id == best_run
    best = max(c.data.metrics["best_val_recall_at_10"] for c in finished)
    assert client.get_run(best_run).data.metrics["best_val_recall_at_10"] == pytest.approx(best)

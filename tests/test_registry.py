"""Model registry against a real `mlflow server` (PostgreSQL backend): promotion rule,
concurrent promotions from separate OS processes, and user-facing errors of the CLI."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from helpers import SHARED_DATA, closed_port, run_xlrec, xlrec_env
from xlrec.errors import XlrecError
from xlrec.platform.registry.champion import ALIAS, METRIC_TAG, promote

pytestmark = pytest.mark.server

N_WORKERS = 8
N_ROUNDS = 3

# One OS process per promoter. It creates its run up front, then for every round waits for the
# round's start file (so all promoters are released together), registers a version of the
# shared registered model, tags it with its metric and calls registry.promote().
WORKER = r"""
import json, os, sys, time
from pathlib import Path
from mlflow import MlflowClient
from xlrec.platform.registry.champion import METRIC_TAG, promote

uri, name, exp_id, workdir, index = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
metrics = json.loads(sys.argv[6])  # this worker's metric for each round
client = MlflowClient(uri)
run = client.create_run(exp_id, run_name=f"promoter-{index}")
(workdir / f"ready_{index}").write_text(run.info.run_id)
for rnd, metric in enumerate(metrics):
    start = workdir / f"start_{rnd}"
    deadline = time.monotonic() + 300
    while not start.exists():
        if time.monotonic() > deadline:
            sys.exit(f"worker {index}: no start signal for round {rnd}")
        time.sleep(0.005)
    mv = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_model_version_tag(name, mv.version, METRIC_TAG, f"{metric:.10f}")
    t0 = time.time()
    res = promote(client, name, int(mv.version))
    # written whole, then renamed: the test reads a done file as soon as it exists
    part = workdir / f"done_{rnd}_{index}.part"
    part.write_text(json.dumps(
        {"version": int(mv.version), "metric": metric, "champion": res.champion, "promoted": res.promoted,
         "reason": res.reason, "span": [t0, time.time()]}))
    part.rename(workdir / f"done_{rnd}_{index}.json")
client.set_terminated(run.info.run_id)
"""


@pytest.fixture
def client(mlflow_server):
    mlflow.set_tracking_uri(mlflow_server)  # MLflow resolves models:/ URIs through the global URI
    return MlflowClient(mlflow_server)


def _new_model(client: MlflowClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return name


def _version(client, name, exp_id, metric: float | None) -> int:
    run = client.create_run(exp_id)
    mv = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    if metric is not None:
        client.set_model_version_tag(name, mv.version, METRIC_TAG, f"{metric:.10f}")
    client.set_terminated(run.info.run_id)
    return int(mv.version)


def _champion(client, name) -> int:
    return int(client.get_model_version_by_alias(name, ALIAS).version)


def _tags(client, name, version) -> dict[str, str]:
    return client.get_model_version(name, str(version)).tags


# --- sequential promotion rule ------------------------------------------------------------------


def test_promotion_rule_sequential(client):
    exp_id = client.create_experiment(f"registry-seq-{uuid.uuid4().hex[:8]}")
    name = _new_model(client, "seq")

    v1 = _version(client, name, exp_id, 0.25)
    res = promote(client, name, v1)
    assert (res.version, res.champion, res.promoted) == (v1, v1, True)
    assert _champion(client, name) == v1
    assert _tags(client, name, v1)["promotion"].startswith("promoted: first version")

    # An equal metric does not beat the champion: the older version keeps the alias.
    v2 = _version(client, name, exp_id, 0.25)
    res = promote(client, name, v2)
    assert (res.champion, res.promoted) == (v1, False)
    assert _champion(client, name) == v1
    assert _tags(client, name, v2)["promotion"].startswith("not promoted")
    assert _tags(client, name, v1)["defended_against"] == f"v{v2}"

    # A worse version is not promoted either.
    v3 = _version(client, name, exp_id, 0.125)
    res = promote(client, name, v3)
    assert (res.champion, res.promoted) == (v1, False)
    assert _tags(client, name, v3)["promotion"].startswith("not promoted")
    assert f"champion v{v1}" in res.reason

    # A better one moves the alias and the old champion records who demoted it.
    v4 = _version(client, name, exp_id, 0.5)
    res = promote(client, name, v4)
    assert (res.champion, res.promoted) == (v4, True)
    assert _champion(client, name) == v4
    assert _tags(client, name, v4)["promotion"].startswith(f"promoted: val recall@10 0.500000 beats v{v1}")
    assert _tags(client, name, v1)["demoted_by"].startswith(f"v{v4} ")

    # A version without the metric tag is never chosen; promoting it reports the real champion.
    v5 = _version(client, name, exp_id, None)
    res = promote(client, name, v5)
    assert (res.champion, res.promoted) == (v4, False)
    assert _champion(client, name) == v4


def test_promotion_without_any_metric_is_a_user_error(client):
    exp_id = client.create_experiment(f"registry-nometric-{uuid.uuid4().hex[:8]}")
    name = _new_model(client, "nometric")
    v1 = _version(client, name, exp_id, None)
    with pytest.raises(XlrecError, match="no version tagged"):
        promote(client, name, v1)


# --- concurrent promotion from separate processes --------------------------------------------------


def test_concurrent_promotions_converge_on_the_best_version(client, mlflow_server, tmp_path):
    exp_id = client.create_experiment(f"registry-race-{uuid.uuid4().hex[:8]}")
    name = _new_model(client, "race")
    rng = random.Random(1234)
    # Distinct metrics across all rounds; each round's values interleave with earlier rounds'
    # so the champion sometimes moves and sometimes is defended.
    values = rng.sample(range(1, 10_000), N_WORKERS * N_ROUNDS)
    per_worker = [[values[r * N_WORKERS + i] / 10_000 for r in range(N_ROUNDS)] for i in range(N_WORKERS)]

    env = xlrec_env(tmp_path / "data")
    logs = [open(tmp_path / f"worker_{i}.log", "w") for i in range(N_WORKERS)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                mlflow_server,
                name,
                exp_id,
                str(tmp_path),
                str(i),
                json.dumps(per_worker[i]),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=logs[i],
            text=True,
        )
        for i in range(N_WORKERS)
    ]
    try:
        _wait_for(tmp_path, [f"ready_{i}" for i in range(N_WORKERS)], procs)
        all_versions: dict[int, float] = {}
        overlaps: list[bool] = []
        for rnd in range(N_ROUNDS):
            (tmp_path / f"start_{rnd}").write_text("go")  # releases every promoter at once
            done = _wait_for(tmp_path, [f"done_{rnd}_{i}.json" for i in range(N_WORKERS)], procs)
            results = [json.loads(p.read_text()) for p in done]
            for r in results:
                all_versions[r["version"]] = r["metric"]
            assert len(all_versions) == N_WORKERS * (rnd + 1)

            best_version = max(all_versions, key=all_versions.get)
            assert _champion(client, name) == best_version, f"round {rnd}: alias not on the max-metric version"

            versions = {int(v.version): v for v in client.search_model_versions(f"name='{name}'")}
            assert set(versions) == set(all_versions)
            for v, mv in versions.items():
                assert "promotion" in mv.tags, f"v{v} has no promotion tag"
                assert float(mv.tags[METRIC_TAG]) == pytest.approx(all_versions[v], abs=1e-12)
            assert versions[best_version].tags["promotion"].startswith("promoted")
            for r in results:
                tag = versions[r["version"]].tags["promotion"]
                assert tag == r["reason"]
                assert tag.startswith("promoted") == r["promoted"]
                if not r["promoted"]:
                    # whoever it lost to was strictly better (or equal and older)
                    assert all_versions[r["champion"]] >= r["metric"]
                    assert r["version"] != best_version
            overlaps.append(max(r["span"][0] for r in results) < min(r["span"][1] for r in results))
        for p in procs:
            p.wait(timeout=120)
    finally:
        for p in procs:  # only on failure: the promoters may still wait for a start signal
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        for f in logs:
            f.close()
    for i, p in enumerate(procs):
        assert p.returncode == 0, (tmp_path / f"worker_{i}.log").read_text()
    print(f"rounds in which all {N_WORKERS} promote() calls overlapped in time: {overlaps}")


def _wait_for(workdir: Path, names: list[str], procs, timeout: float = 300) -> list[Path]:
    paths = [workdir / n for n in names]
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for i, proc in enumerate(procs):
            if proc.poll() not in (None, 0):
                pytest.fail(f"promoter {i} failed:\n{(workdir / f'worker_{i}.log').read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"promoters did not finish: missing {[p.name for p in paths if not p.exists()]}")
        time.sleep(0.05)
    return paths


# --- user-facing errors ------------------------------------------------------------------------------


def _one_paragraph_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("xlrec: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_evaluate_unknown_model_is_a_clear_error(mlflow_server, tmp_path):
    env = xlrec_env(tmp_path / "data", SHARED_DATA)
    proc = run_xlrec(
        ["evaluate", "--model-uri", "models:/nope@champion", "--tracking-uri", mlflow_server, "--device", "cpu"],
        env,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    msg = _one_paragraph_error(proc.stderr)
    assert "'models:/nope@champion' was not found" in msg
    assert mlflow_server in msg
    assert "xlrec registry list" in msg


def test_train_against_unreachable_server_fails_before_training(tmp_path):
    env = xlrec_env(tmp_path / "data", SHARED_DATA)
    uri = f"http://127.0.0.1:{closed_port()}"
    proc = run_xlrec(
        [
            "train",
            "--model",
            "gru4rec",
            "--dataset",
            "ml-100k",
            "--epochs",
            "1",
            "--max-len",
            "20",
            "--embedding-dim",
            "16",
            "--device",
            "cpu",
            "--tracking-uri",
            uri,
        ],
        env,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    msg = _one_paragraph_error(proc.stderr)
    assert "Cannot reach" in msg and uri in msg
    assert not re.search(r"^\[xlrec\] epoch", proc.stderr, re.M), "it trained before failing"
    assert proc.stdout.strip() == ""
    assert not (tmp_path / "data" / "processed").exists(), "it prepared data before failing"

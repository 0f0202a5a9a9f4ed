"""MLflow tracking end to end through the CLI, on real ML-100K.

Against a real `mlflow server` (PostgreSQL backend store, proxied artifacts): two `xlrec train`
runs of different models, then what a user reads back from them (params, per-epoch metrics,
artifacts, dataset lineage, tags, registry) and what `evaluate`, `recommend` and `registry`
do with the registered champion. Plus the embedded SQLite default, a diverging run that must
end FAILED, and adopting a run created beforehand (MLFLOW_RUN_ID, as under `mlflow run`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import uuid
from importlib.metadata import version as dist_version
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from helpers import SHARED_DATA, run_xlrec, xlrec_env
from xlrec.config import settings_class

pytestmark = [pytest.mark.server, pytest.mark.slow]

MODELS = ("gru4rec", "sasrec")
EPOCHS = 2
TEST_USERS = 943  # ML-100K: every user has a test target (leave-two-out)
SMALL = [
    "--dataset",
    "ml-100k",
    "--epochs",
    str(EPOCHS),
    "--max-len",
    "20",
    "--embedding-dim",
    "16",
    "--batch-size",
    "256",
    "--device",
    "cpu",
]
PER_EPOCH = (
    "val_recall_at_10",
    "val_ndcg_at_10",
    "train_loss",
    "grad_norm",
    "lr",
    "epoch_time_s",
    "throughput",
    "rss_mb",
    "cpu_threads",
)
RUN_ARTIFACTS = {
    "config.yaml",
    "history.csv",
    "training_curves.png",
    "parameters.csv",
    "test_per_user.parquet",
    "sample_predictions.md",
    "items.parquet",
}


def _key(name: str) -> str:
    return name.replace("@", "_at_")


def _error_line(stderr: str) -> str:
    """The CLI's user error: exactly one 'xlrec: error:' paragraph and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("xlrec: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not (SHARED_DATA / "ml-100k" / "u.data").is_file():
        pytest.skip(f"ML-100K not found under {SHARED_DATA}")
    # One torch thread per process: the two trainings run side by side on 2 cores, and every
    # later `evaluate` uses the same thread count as the training it reproduces.
    env = xlrec_env(tmp_path_factory.mktemp("data"), SHARED_DATA, OMP_NUM_THREADS="1")
    prep = run_xlrec(["data", "prepare", "--dataset", "ml-100k"], env)  # cache it once, before parallel runs
    assert prep.returncode == 0, prep.stderr
    return env


@pytest.fixture(scope="module")
def client(mlflow_server):
    mlflow.set_tracking_uri(mlflow_server)  # models:/ and runs:/ URIs resolve through the global URI
    return MlflowClient(mlflow_server)


@pytest.fixture(scope="module")
def trained(mlflow_server, env, client, tmp_path_factory):
    """`xlrec train` of two models into one fresh experiment (both processes at once)."""
    experiment = f"xlrec-test-{uuid.uuid4().hex[:8]}"
    cwd = tmp_path_factory.mktemp("train-cwd")
    procs = {
        m: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xlrec",
                "train",
                "--model",
                m,
                *SMALL,
                "--experiment",
                experiment,
                "--tracking-uri",
                mlflow_server,
            ],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for m in MODELS
    }
    outputs = {m: p.communicate(timeout=900) for m, p in procs.items()}
    for m, p in procs.items():
        assert p.returncode == 0, f"{m}:\n{outputs[m][1][-5000:]}"
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = {}
    for m in MODELS:
        found = client.search_runs([exp.experiment_id], f"tags.model_family = '{m}'")
        assert len(found) == 1
        runs[m] = found[0]
    return {
        "experiment": exp,
        "runs": runs,
        "summaries": {m: _last_json(outputs[m][0]) for m in MODELS},
        "stderr": {m: outputs[m][1] for m in MODELS},
    }


# --- what the two runs logged ------------------------------------------------------------------------


def test_both_runs_finished_in_one_experiment_with_identical_keys(trained, client):
    runs = trained["runs"]
    exp_id = trained["experiment"].experiment_id
    assert len(client.search_runs([exp_id])) == 2
    for m, run in runs.items():
        assert run.info.experiment_id == exp_id
        assert run.info.status == "FINISHED"
        assert run.data.params["model"] == m and run.data.params["dataset"] == "ml-100k"
        assert run.data.params["epochs"] == str(EPOCHS) and run.data.params["max_len"] == "20"
        assert run.data.tags["xlrec.status"] == "completed"
    a, b = (runs[m] for m in MODELS)
    # the run settings are the same keys; each model adds exactly its own family's settings
    arch = {m: {f.name for f in dataclasses.fields(settings_class(m))} for m in MODELS}
    assert set(a.data.params) - arch[MODELS[0]] == set(b.data.params) - arch[MODELS[1]]
    for m, run in runs.items():
        assert arch[m] <= set(run.data.params)
        assert set(run.data.params) & (set().union(*arch.values()) - arch[m]) == set()
    assert "num_heads" in b.data.params and "num_heads" not in a.data.params  # sasrec has heads, gru4rec none
    assert set(a.data.metrics) == set(b.data.metrics)
    # the final JSON line and the logged metrics are the same numbers
    for m, run in runs.items():
        summary = trained["summaries"][m]
        assert summary["model"] == m and summary["epochs_run"] == EPOCHS
        for k, v in summary["test"].items():
            assert run.data.metrics[f"test_{_key(k)}"] == v
        for k, v in summary["val"].items():
            assert run.data.metrics[f"best_val_{_key(k)}"] == v
        assert run.data.metrics["epochs_run"] == EPOCHS
        assert run.data.metrics["best_epoch"] == summary["best_epoch"]
        assert run.data.metrics["params_total"] == summary["params"]


def test_per_epoch_metric_history(trained, client, tmp_path):
    for m, run in trained["runs"].items():
        rid = run.info.run_id
        for key in PER_EPOCH:
            hist = client.get_metric_history(rid, key)
            assert sorted(h.step for h in hist) == list(range(1, EPOCHS + 1)), (m, key)
        # the history.csv artifact holds the same per-epoch numbers
        path = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="history.csv", dst_path=str(tmp_path / m))
        csv = pd.read_csv(path)
        assert csv["epoch"].tolist() == list(range(1, EPOCHS + 1))
        for col in ("val_recall_at_10", "train_loss", "lr"):
            logged = {h.step: h.value for h in client.get_metric_history(rid, _key(col))}
            for epoch, value in zip(csv["epoch"], csv[col]):
                assert logged[epoch] == pytest.approx(value, rel=1e-12, abs=1e-15)
        assert all(h.value > 0 for h in client.get_metric_history(rid, "throughput"))
        assert all(h.value > 0 for h in client.get_metric_history(rid, "rss_mb"))


def test_artifacts(trained, client, tmp_path):
    for m, run in trained["runs"].items():
        rid = run.info.run_id
        top = {a.path for a in client.list_artifacts(rid)}
        assert RUN_ARTIFACTS <= top, top
        model_files = {a.path for a in client.list_artifacts(rid, "model")}
        assert "model/MLmodel" in model_files
        # xlrec model format 2: no pickle; weights, config and item map under the pyfunc data folder
        data = {a.path for a in client.list_artifacts(rid, "model/data/xlrec")}
        assert data == {
            "model/data/xlrec/config.yaml",
            "model/data/xlrec/item_map.json",
            "model/data/xlrec/model.safetensors",
        }
        assert not any(p.endswith((".pth", ".pkl")) for p in _all_artifacts(client, rid, "model"))
        mlmodel = yaml.safe_load(
            Path(
                mlflow.artifacts.download_artifacts(
                    run_id=rid, artifact_path="model/MLmodel", dst_path=str(tmp_path / f"{m}-mlmodel")
                )
            ).read_text()
        )
        assert set(mlmodel["flavors"]) == {"python_function"}
        assert mlmodel["flavors"]["python_function"]["loader_module"] == "xlrec.platform.registry.serving"
        assert mlmodel["metadata"]["xlrec"]["format_version"] == 2

        local = Path(mlflow.artifacts.download_artifacts(run_id=rid, dst_path=str(tmp_path / m)))
        table = pd.read_parquet(local / "test_per_user.parquet")
        assert len(table) == TEST_USERS
        assert {"user_id", "rank", "top10"} <= set(table.columns)
        assert table["user_id"].nunique() == TEST_USERS
        assert all(len(t) == 10 for t in table["top10"])
        # ranks are 1-based (the best item is rank 1) and reproduce the logged aggregate exactly
        assert table["rank"].min() >= 1
        hits = (table["rank"] <= 10).mean()
        assert hits == pytest.approx(run.data.metrics["test_recall_at_10"], abs=1e-12)
        cfg = yaml.safe_load((local / "config.yaml").read_text())
        assert cfg["model"] == m and cfg["epochs"] == EPOCHS and cfg["max_len"] == 20
        assert (local / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (local / "sample_predictions.md").read_text().startswith("# Sample predictions")
        items = pd.read_parquet(local / "items.parquet")  # names and weighs every top-10 entry
        assert set(table["top10"].explode().astype(int)) <= set(items["item_index"])
        assert len(items) == int(run.data.params["num_items"]) and items["interactions"].min() >= 1
        # each user's last 10 items before the target (ML-100K users have >= 20): the same history
        # sample_predictions.md names, which it reads from the sequences by its own slicing
        assert all(len(h) == 10 for h in table["history"])
        title = dict(zip(items["item_index"], items["title"]))
        shown = re.findall(r"^Recent history: (.*)$", (local / "sample_predictions.md").read_text(), re.M)
        assert shown == ["; ".join(title[int(i)] for i in h) for h in table["history"].head(len(shown))]
        # the items' output vectors: one row per item, one column per dimension
        vectors = pd.read_parquet(local / "item_vectors.parquet")
        assert vectors.shape == (int(run.data.params["num_items"]), int(run.data.params["embedding_dim"]) + 1)
        params_csv = pd.read_csv(local / "parameters.csv")
        assert (
            int(params_csv.loc[params_csv["component"] == "total", "count"].iloc[0]) == run.data.metrics["params_total"]
        )


def _all_artifacts(client, run_id: str, path: str) -> list[str]:
    out = []
    for a in client.list_artifacts(run_id, path):
        out.extend(_all_artifacts(client, run_id, a.path) if a.is_dir else [a.path])
    return out


def test_dataset_lineage_and_tags(trained):
    hashes = set()
    for m, run in trained["runs"].items():
        inputs = run.inputs.dataset_inputs
        assert len(inputs) == 1
        ds = inputs[0]
        assert ds.dataset.name == "ml-100k"
        tags = {t.key: t.value for t in ds.tags}
        assert re.fullmatch(r"[0-9a-f]{64}", tags["content_sha256"])
        assert tags["users"] == "943" and tags["items"] == "1682" and tags["interactions"] == "100000"
        assert tags["mlflow.data.context"] == "training"
        hashes.add(tags["content_sha256"])

        t = run.data.tags
        assert re.fullmatch(r"[0-9a-f]{40}|unknown", t["git_commit"])
        assert t["device_name"]
        assert t["version.xlstm"] == dist_version("xlstm")
        assert t["model_family"] == m and t["dataset"] == "ml-100k"
    assert len(hashes) == 1  # same data, same fingerprint


def test_each_run_registered_and_promoted(trained, client):
    for m, run in trained["runs"].items():
        name = f"{m}-ml-100k"
        versions = client.search_model_versions(f"name='{name}'")
        assert len(versions) == 1
        mv = versions[0]
        assert mv.run_id == run.info.run_id
        champ = client.get_model_version_by_alias(name, "champion")
        assert champ.version == mv.version
        assert mv.tags["promotion"].startswith("promoted: first version")
        assert float(mv.tags["val_recall_at_10"]) == pytest.approx(run.data.metrics["best_val_recall_at_10"], abs=1e-10)
        ds_hash = {t.key: t.value for t in run.inputs.dataset_inputs[0].tags}["content_sha256"]
        assert mv.tags["dataset_sha256"] == ds_hash
        assert run.data.tags["xlrec.registered_model"] == name
        assert run.data.tags["xlrec.model_version"] == str(mv.version)


# --- using the registered champion ----------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_evaluate_champion_reproduces_logged_metrics(model, trained, env, mlflow_server, tmp_path):
    run = trained["runs"][model]
    proc = run_xlrec(
        [
            "evaluate",
            "--model-uri",
            f"models:/{model}-ml-100k@champion",
            "--dataset",
            "ml-100k",
            "--tracking-uri",
            mlflow_server,
            "--device",
            "cpu",
        ],
        env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = _last_json(proc.stdout)
    assert out["run_id"] == run.info.run_id
    assert out["model"] == model and out["dataset"] == "ml-100k"
    assert len(out["test"]) >= 9
    for k, v in out["test"].items():
        assert v == run.data.metrics[f"test_{_key(k)}"], k  # exactly the producing run's numbers
    for k, v in out["val"].items():
        assert v == run.data.metrics[f"best_val_{_key(k)}"], k
    assert out["epochs_run"] == EPOCHS


def test_evaluate_on_another_dataset_is_refused(trained, env, mlflow_server, tmp_path):
    proc = run_xlrec(
        [
            "evaluate",
            "--model-uri",
            "models:/gru4rec-ml-100k@champion",
            "--dataset",
            "ml-1m",
            "--tracking-uri",
            mlflow_server,
            "--device",
            "cpu",
        ],
        env,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    msg = _error_line(proc.stderr)
    assert "trained on 'ml-100k', not 'ml-1m'" in msg
    assert proc.stdout.strip() == ""


def test_registry_list_and_download(trained, env, mlflow_server, tmp_path):
    proc = run_xlrec(["registry", "list", "--tracking-uri", mlflow_server], env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for m, run in trained["runs"].items():
        name = f"{m}-ml-100k"
        i = lines.index(name)
        assert "@champion" in lines[i + 1] and run.info.run_id in lines[i + 1]

    dst = tmp_path / "dl"
    proc = run_xlrec(
        [
            "registry",
            "download",
            "--name",
            "sasrec-ml-100k",
            "--alias",
            "champion",
            "--dst",
            str(dst),
            "--tracking-uri",
            mlflow_server,
        ],
        env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _last_json(proc.stdout)
    assert out["run_id"] == trained["runs"]["sasrec"].info.run_id
    assert (dst / "MLmodel").is_file()
    for key in ("config", "item_map", "weights"):
        assert Path(out[key]).is_file() and Path(out[key]).parent == dst / "data" / "xlrec", key
    assert yaml.safe_load(Path(out["config"]).read_text())["model"] == "sasrec"
    item_map = json.loads(Path(out["item_map"]).read_text())
    assert len(item_map["item_ids"]) == len(item_map["titles"]) == 1682 + 1  # index 0 is padding


def test_recommend_prints_ten_titles(trained, env, mlflow_server, tmp_path):
    proc = run_xlrec(
        [
            "recommend",
            "--model-uri",
            "models:/sasrec-ml-100k@champion",
            "--user",
            "1",
            "--tracking-uri",
            mlflow_server,
            "--device",
            "cpu",
        ],
        env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    lines = [line for line in lines if re.match(r"^\s*\d+\. ", line)]
    assert len(lines) == 10
    titles = {}
    for row in (SHARED_DATA / "ml-100k" / "u.item").read_bytes().decode("latin-1").splitlines():
        parts = row.split("|")
        if len(parts) > 1:
            titles[parts[0]] = parts[1]
    seen = {
        row.split("\t")[1]
        for row in (SHARED_DATA / "ml-100k" / "u.data").read_text().splitlines()
        if row.split("\t")[0] == "1"
    }
    items = []
    for rank, line in enumerate(lines, 1):
        m = re.fullmatch(r"\s*(\d+)\. (.+) \(item (\d+), score (-?[\d.]+)\)", line)
        assert m, line
        assert int(m.group(1)) == rank
        assert titles[m.group(3)] == m.group(2)  # the real ML-100K title of that item
        items.append(m.group(3))
    assert len(set(items)) == 10
    assert not set(items) & seen  # seen items are excluded by default


# --- other backends and run lifecycles ----------------------------------------------------------------


def test_embedded_sqlite_default(tmp_path, env, sqlite_tracking_uri):
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
            "10",
            "--embedding-dim",
            "8",
            "--batch-size",
            "512",
            "--device",
            "cpu",
            "--experiment",
            "default-db",
        ],
        env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    db = tmp_path / "mlflow.db"
    assert db.is_file()
    assert sqlite_tracking_uri == f"sqlite:///{db}"  # MLflow's default sqlite:///mlflow.db, resolved in the cwd
    client = MlflowClient(sqlite_tracking_uri)
    exp = client.get_experiment_by_name("default-db")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_recall_at_10"] == _last_json(proc.stdout)["test"]["recall@10"]
    assert len(client.get_metric_history(run.info.run_id, "val_recall_at_10")) == 1
    mv = client.get_model_version_by_alias("gru4rec-ml-100k", "champion")
    assert mv.run_id == run.info.run_id


def test_diverging_run_ends_failed(client, env, mlflow_server, tmp_path):
    experiment = f"diverge-{uuid.uuid4().hex[:8]}"
    proc = run_xlrec(
        [
            "train",
            "--model",
            "sasrec",
            *SMALL,
            "--lr",
            "1e12",
            "--grad-clip",
            "0",
            "--experiment",
            experiment,
            "--tracking-uri",
            mlflow_server,
        ],
        env,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    msg = _error_line(proc.stderr)
    assert "Training loss became" in msg
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    assert run.data.tags["xlrec.status"] == "FAILED"
    assert run.data.tags["xlrec.failure_reason"].startswith("TrainingDiverged: Training loss became")
    assert "test_recall_at_10" not in run.data.metrics
    registered = client.search_model_versions("name='sasrec-ml-100k'")
    assert run.info.run_id not in {mv.run_id for mv in registered}


def test_adopts_the_run_named_by_mlflow_run_id(client, env, mlflow_server, tmp_path):
    exp_id = client.create_experiment(f"adopt-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp_id, run_name="created-outside")
    adopt_env = {**env, "MLFLOW_RUN_ID": run.info.run_id}
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
            "10",
            "--embedding-dim",
            "8",
            "--batch-size",
            "512",
            "--device",
            "cpu",
            "--no-register",
            "--experiment",
            "must-not-be-used",
            "--tracking-uri",
            mlflow_server,
        ],
        adopt_env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    runs = client.search_runs([exp_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # no other run in that experiment
    adopted = runs[0]
    assert adopted.info.status == "FINISHED"
    assert adopted.info.run_name == "created-outside"
    assert adopted.data.params["model"] == "gru4rec" and adopted.data.params["epochs"] == "1"
    assert adopted.data.metrics["test_recall_at_10"] == _last_json(proc.stdout)["test"]["recall@10"]
    assert client.get_experiment_by_name("must-not-be-used") is None

"""Server mode: a sweep logs to a real `mlflow server` on PostgreSQL and keeps its Optuna
study in PostgreSQL (the deployment of a shared team server), on a local Ray."""

from __future__ import annotations

import optuna
import pytest
from mlflow import MlflowClient

from helpers import TINY, summary_of, sweep
from mlflow_server import create_database, drop_database

pytestmark = pytest.mark.server


@pytest.fixture
def study_storage():
    uri = create_database("xlrec_optuna")
    try:
        yield uri
    finally:
        drop_database(uri)


URI_SECRET = "Sw33pT0kenXyz"
STUDY_SECRET = "0ptunaS3cretXyz"


def test_search_sweep_on_postgres_backed_mlflow_and_optuna(tmp_path, mlflow_server, study_storage):
    # Both URIs carry credentials (the server has no auth and PostgreSQL trusts loopback, so any
    # password works): the sweep must run with them and never write them anywhere.
    tracking_uri = mlflow_server.replace("http://", f"http://sweeper:{URI_SECRET}@")
    user_part = study_storage.split("://", 1)[1].split("@", 1)[0]
    storage_with_password = study_storage.replace(f"://{user_part}@", f"://{user_part}:{STUDY_SECRET}@")
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
        "2",
        "--seed",
        "3",
        *TINY,
        "--set",
        "max_len=10",
        "--experiment",
        "server-mode",
        "--tracking-uri",
        tracking_uri,
        "--study-storage",
        storage_with_password,
        "--cpus-per-trial",
        "1",
        "--max-concurrent",
        "1",
    )  # one at a time: ASHA sees the same reports in the same order
    summary = summary_of(proc)
    # one at a time (the same reports in the same order every run), the second trial falls below the
    # first at epoch 1 and ASHA prunes it
    assert (summary["trials_done"], summary["trials_pruned"], summary["trials_failed"]) == (1, 1, 0)
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the embedded sqlite default
    assert not (tmp_path / "optuna.db").exists()

    client = MlflowClient(mlflow_server)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 2
    assert {c.info.status for c in children} <= {"FINISHED", "KILLED"}
    assert all("val_recall_at_10" in c.data.metrics for c in children)

    # the study lives in PostgreSQL, named after the sweep, with both trials in a final state
    name = f"{parent.data.tags['xlrec.sweep_name']}-{parent.info.run_id[:8]}"
    assert name in optuna.study.get_all_study_names(study_storage)
    study = optuna.load_study(study_name=name, storage=study_storage)
    states = [t.state for t in study.trials]
    assert len(states) == 2
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    # the champion alias points at a version of the sweep's best trial run
    champion = summary["champion"]
    mv = client.get_model_version_by_alias(champion["name"], "champion")
    assert int(mv.version) == champion["version"]
    assert mv.run_id in {c.info.run_id for c in children}

    # credentials: not in the output, not in any file the sweep left (Tune's params.json,
    # experiment state, searcher checkpoint, trial checkpoints), not in MLflow params or tags
    for secret in (URI_SECRET, STUDY_SECRET):
        assert secret not in proc.stdout + proc.stderr
        leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert leaked == []
        for run in [parent, *children]:
            assert secret not in repr(run.data.params) + repr(run.data.tags)

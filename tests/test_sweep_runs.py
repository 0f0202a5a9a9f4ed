"""The sweep's MLflow adapter (xlrec.platform.tracking.sweep_tracking) on a real sqlite store, without Ray:
parent adoption, immutable params, closing and aborting trial runs, pruned trials."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from xlrec.platform.tracking.sweep_tracking import SweepRecorder, end_pruned, finished_run_metrics


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh sqlite store; the process-wide tracking URI and active runs restored afterwards."""
    previous = mlflow.get_tracking_uri()
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    yield f"sqlite:///{tmp_path / 'mlflow.db'}"
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def _trial(client: MlflowClient, parent, name: str) -> str:
    run = client.create_run(
        parent.experiment_id,
        run_name=name,
        tags={"xlrec.sweep_run_id": parent.run_id, "mlflow.parentRunId": parent.run_id},
    )
    return run.info.run_id


def test_adopted_parent_is_named_after_the_sweep_and_keeps_mlflow_runs_params(store, monkeypatch):
    client = MlflowClient(store)
    exp = client.create_experiment("chosen-by-mlflow-run")
    made = client.create_run(exp)
    client.log_param(made.info.run_id, "trials", "4")
    client.log_param(made.info.run_id, "epochs", "8.0")
    monkeypatch.setenv("MLFLOW_RUN_ID", made.info.run_id)
    recorder = SweepRecorder(store)
    parent = recorder.open_parent("search-gru4rec-synthetic", "xlrec-synthetic")
    assert parent.adopted and parent.run_id == made.info.run_id
    assert parent.experiment == "chosen-by-mlflow-run"
    recorder.log_params({"trials": 6, "epochs": 8, "mode": "search", "source": "https://u:secret@host/data"})
    recorder.end()
    run = client.get_run(parent.run_id)
    assert run.info.run_name == "search-gru4rec-synthetic" and run.info.status == "FINISHED"
    assert run.data.params == {
        "trials": "4",
        "epochs": "8.0",
        "resolved.trials": "6",
        "mode": "search",
        "source": "https://u:***@host/data",
    }
    assert "xlrec.pid" in run.data.tags


def test_abort_marks_the_parent_and_its_running_trials(store):
    recorder = SweepRecorder(store)
    parent = recorder.open_parent("grid-x", "xlrec-x")
    client = MlflowClient(store)
    running, done = _trial(client, parent, "a"), _trial(client, parent, "b")
    client.set_terminated(done, "FINISHED")
    recorder.abort(KeyboardInterrupt("SIGTERM"))
    for run_id, status in ((parent.run_id, "KILLED"), (running, "KILLED"), (done, "FINISHED")):
        assert client.get_run(run_id).info.status == status
    assert client.get_run(running).data.tags["xlrec.failure_reason"] == "sweep interrupted (SIGTERM)"
    assert mlflow.active_run() is None


def test_close_trial_marks_pruned_and_failed_runs(store):
    recorder = SweepRecorder(store)
    parent = recorder.open_parent("search-x", "xlrec-x")
    client = MlflowClient(store)
    pruned, failed = _trial(client, parent, "p"), _trial(client, parent, "f")
    recorder.close_trial(pruned, "PRUNED", "")
    recorder.close_trial(failed, "FAILED", "ValueError: boom")
    p, f = client.get_run(pruned), client.get_run(failed)
    assert (p.info.status, p.data.tags["xlrec.pruned"], p.data.tags["xlrec.status"]) == ("KILLED", "true", "pruned")
    assert "xlrec.failure_reason" not in p.data.tags
    assert (f.info.status, f.data.tags["xlrec.failure_reason"]) == ("FAILED", "ValueError: boom")
    assert recorder.trial_run(failed).name == "f"
    recorder.end()


class _TrialClosesItselfMeanwhile(MlflowClient):
    """A real client whose first tag write loses the race CI once hit: the stopped trial's own
    end_pruned lands first (real writes) and the store refuses the driver's duplicate insert."""

    def __init__(self, uri: str, epoch: int) -> None:
        super().__init__(uri)
        self.epoch, self.raced = epoch, False

    def set_tag(self, run_id, key, value, synchronous=None):
        if not self.raced:
            self.raced = True
            trial = MlflowClient(self._registry_uri)  # what end_pruned writes, from the trial's side
            for k, v in {
                "xlrec.status": "pruned",
                "xlrec.pruned": "true",
                "xlrec.pruned_after_epoch": str(self.epoch),
            }.items():
                trial.set_tag(run_id, k, v)
            trial.set_terminated(run_id, "KILLED")
            raise MlflowException("UNIQUE constraint failed: tags.key, tags.run_uuid")
        return super().set_tag(run_id, key, value, synchronous=synchronous)


def test_close_trial_survives_the_trial_closing_its_own_run_at_the_same_time(store):
    recorder = SweepRecorder(store)
    parent = recorder.open_parent("search-x", "xlrec-x")
    pruned = _trial(MlflowClient(store), parent, "p")
    recorder.client = _TrialClosesItselfMeanwhile(store, epoch=4)
    recorder.close_trial(pruned, "PRUNED", "")  # no exception: the sweep's results still get written
    run = MlflowClient(store).get_run(pruned)
    assert run.info.status == "KILLED"
    assert {k: run.data.tags[k] for k in ("xlrec.status", "xlrec.pruned", "xlrec.pruned_after_epoch")} == {
        "xlrec.status": "pruned",
        "xlrec.pruned": "true",
        "xlrec.pruned_after_epoch": "4",
    }
    recorder.end()


def test_a_pruned_trial_ends_killed_with_the_epoch(store):
    mlflow.set_tracking_uri(store)
    run = mlflow.start_run(experiment_id=mlflow.set_experiment("trials").experiment_id)
    end_pruned("not-this-run", 3)
    assert mlflow.active_run() is not None  # another run is left alone
    end_pruned(run.info.run_id, 3)
    closed = MlflowClient(store).get_run(run.info.run_id)
    assert closed.info.status == "KILLED"
    assert {k: closed.data.tags[k] for k in ("xlrec.status", "xlrec.pruned", "xlrec.pruned_after_epoch")} == {
        "xlrec.status": "pruned",
        "xlrec.pruned": "true",
        "xlrec.pruned_after_epoch": "3",
    }
    assert "xlrec.failure_reason" not in closed.data.tags
    assert finished_run_metrics(store, run.info.run_id) is None  # not FINISHED: trained again

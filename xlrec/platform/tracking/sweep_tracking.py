"""A sweep's runs in MLflow: the parent run the driver records, and its trials' child runs.

The driver side is `SweepRecorder`: it opens the parent (or adopts the run `mlflow run . -e
sweep` created, MLFLOW_RUN_ID, or the one a resumed sweep recorded), logs the sweep's
settings, reaps the trial runs whose process died with an earlier driver, closes the trial
runs Tune stopped, logs the results to the parent, and ends (or aborts) the sweep's runs.
The trial side is `end_pruned` and `finished_run_metrics`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from xlrec.platform.mlflow_env import quiet_links_for
from xlrec.platform.tracking.run_lifecycle import end_status, process_tags, reap, shield_signals
from xlrec.redact import redact

_REASON_LIMIT = 4000


@dataclass(frozen=True)
class ParentRun:
    run_id: str
    experiment_id: str
    experiment: str  # the experiment it lives in; its trials nest there too
    adopted: bool  # `mlflow run` created it (MLFLOW_RUN_ID)


@dataclass
class TrialRun:
    """What the trials table reads from a trial's run."""

    run_id: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Champion:
    """The registered model version an alias points at."""

    version: int
    run_id: str | None


def _same(a: str, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


class SweepRecorder:
    """The sweep's parent run (the process's active MLflow run) and its trial runs."""

    def __init__(self, uri: str):
        quiet_links_for(uri)
        mlflow.set_tracking_uri(uri)
        self.uri = uri
        self.client = MlflowClient()
        self.parent: ParentRun | None = None

    @property
    def parent_id(self) -> str:
        if self.parent is None:
            raise RuntimeError("SweepRecorder.open_parent() comes first")
        return self.parent.run_id

    def open_parent(
        self, name: str, experiment: str, resume_run_id: str | None = None, nested_in: str | None = None
    ) -> ParentRun:
        """Start the parent run `name` in `experiment`, or continue `resume_run_id`, or adopt
        `mlflow run`'s MLFLOW_RUN_ID (then named after the sweep, in the experiment `mlflow run`
        chose); `nested_in`: the run it nests under in MLflow's UI (`xlrec tune`'s own)."""
        env_run = os.environ.pop("MLFLOW_RUN_ID", None)  # trials must not inherit it either
        adopted = bool(env_run) and not resume_run_id
        run_id = resume_run_id or env_run
        if not run_id:
            mlflow.set_experiment(experiment)
        with shield_signals():  # the driver's handlers find the parent once it exists (and `runs reap` its owner)
            run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=name)
        mlflow.set_tags(process_tags())
        if nested_in:
            mlflow.set_tag("mlflow.parentRunId", nested_in)
        if adopted:  # `mlflow run` named it at random and chose its experiment
            mlflow.set_tag("mlflow.runName", name)
            experiment = mlflow.get_experiment(run.info.experiment_id).name
        self.parent = ParentRun(run.info.run_id, run.info.experiment_id, experiment, adopted)
        return self.parent

    def sweep_names(self, experiment: str) -> set[str]:
        """The names of the sweeps (their parent runs) already in `experiment`."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return set()
        parents = self.client.search_runs([exp.experiment_id], "tags.`xlrec.sweep` = 'parent'", max_results=5000)
        return {r.info.run_name for r in parents if r.info.run_name}

    def log_params(self, params: dict[str, Any]) -> None:
        """The sweep's settings, credentials masked. `mlflow run` has logged its own parameters
        already (params are immutable), so a key it logged with the same value is not logged
        again, and a differing one is logged as resolved.<key>."""
        existing = self.client.get_run(self.parent_id).data.params
        mlflow.log_params(
            {
                (k if k not in existing else f"resolved.{k}"): redact(str(v))
                for k, v in params.items()
                if k not in existing or not _same(existing[k], v)
            }
        )

    def set_tags(self, tags: dict[str, str], description: str | None = None) -> None:
        """Tags of the parent run; `description` is the markdown the MLflow UI shows for it."""
        mlflow.set_tags({"mlflow.note.content": description, **tags} if description is not None else tags)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics)

    def log_spec(self, text: str) -> None:
        """The sweep's spec, as `xlrec sweep --spec sweep.yaml` re-runs it."""
        mlflow.log_text(redact(text), "sweep.yaml")

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def reap_dead_trials(self) -> None:
        """A resumed sweep: its trial runs whose process died with the old driver are marked
        FAILED (a trial Tune restarts continues its run and clears that), and the parent's old
        failure reason goes."""
        parent = self.client.get_run(self.parent_id)
        if "xlrec.failure_reason" in parent.data.tags:
            self.client.delete_tag(self.parent_id, "xlrec.failure_reason")
        for v in reap(
            self.client,
            [parent.info.experiment_id],
            filter_string=f"tags.`xlrec.sweep_run_id` = '{self.parent_id}'",
            reason_prefix="reaped when the sweep resumed",
        ):
            if v.action == "reaped":
                print(f"[xlrec] trial run {v.run_id}: {v.detail}", file=sys.stderr)

    def close_trial(self, run_id: str, status: str, reason: str) -> None:
        """A trial run Tune stopped (ASHA) or lost ends KILLED (status PRUNED) or FAILED, with
        the reason; one the trial closed itself keeps its own reason and gets the pruned tags.

        The stopped trial may be closing its own run at this very moment (end_pruned): the
        tracking store then refuses one of two simultaneous first writes of a tag (sqlite's
        UNIQUE constraint). So the state is read again and the close retried; if it still
        fails the sweep goes on and says so (`xlrec runs reap` finishes such a run)."""
        for attempt in range(3):
            try:
                self._close_trial_once(run_id, status, reason)
                return
            except MlflowException as exc:
                if attempt == 2:
                    print(f"[xlrec] could not close trial run {run_id} as {status.lower()}: {exc}", file=sys.stderr)
                time.sleep(0.5 * (attempt + 1))

    def _close_trial_once(self, run_id: str, status: str, reason: str) -> None:
        client = self.client
        run = client.get_run(run_id)
        if run.info.status == "RUNNING":  # the trial was stopped by ASHA (or died) mid-training
            client.set_tag(run_id, "xlrec.status", status.lower())
            if status == "PRUNED":
                client.set_tag(run_id, "xlrec.pruned", "true")
            else:
                client.set_tag(run_id, "xlrec.failure_reason", reason[:_REASON_LIMIT])
            client.set_terminated(run_id, "KILLED" if status == "PRUNED" else "FAILED")
        elif status == "PRUNED" and run.data.tags.get("xlrec.pruned") != "true":  # closed by the dying trial
            client.set_tag(run_id, "xlrec.status", "pruned")
            client.set_tag(run_id, "xlrec.pruned", "true")
        elif status == "FAILED" and "xlrec.failure_reason" not in run.data.tags:  # keep the trial's own
            client.set_tag(run_id, "xlrec.failure_reason", reason[:_REASON_LIMIT])

    def trial_run_id(self, key: str) -> str | None:
        """The run of the trial (or grouped seed, `<trial id>-s<seed>`) with this key, if it opened one."""
        return earlier_attempt(self.uri, self.parent_id, key)

    def run_finished(self, run_id: str) -> bool:
        """Whether the run ended FINISHED with its test results (a grouped seed that completed)."""
        return finished_run_metrics(self.uri, run_id) is not None

    def trial_run(self, run_id: str) -> TrialRun:
        run = self.client.get_run(run_id)
        return TrialRun(run_id, run.info.run_name, dict(run.data.tags), dict(run.data.params), dict(run.data.metrics))

    def champion(self, model_name: str, alias: str) -> Champion | None:
        """The version `alias` points at, or None (no such model or alias)."""
        try:
            version = self.client.get_model_version_by_alias(model_name, alias)
        except Exception:
            return None
        return Champion(int(version.version), version.run_id)

    def end(self) -> None:
        """The sweep finished: the parent ends FINISHED."""
        mlflow.end_run()

    def abort(self, exc: BaseException) -> None:
        """The sweep ends early: every trial run still RUNNING and the parent end KILLED (a
        signal) or FAILED (an error), with the reason. Never raises: the original error matters
        more, and `xlrec runs reap` can finish this."""
        active = mlflow.active_run()  # the parent, when open_parent failed after creating it
        parent_id = self.parent.run_id if self.parent else (active.info.run_id if active else None)
        if parent_id is None:
            return
        status, reason = end_status(exc)
        reason = f"sweep {reason}" if status == "KILLED" else reason
        try:
            client = self.client
            parent = client.get_run(parent_id)
            for run in client.search_runs(
                [parent.info.experiment_id],
                f"attributes.status = 'RUNNING' and tags.`xlrec.sweep_run_id` = '{parent_id}'",
                max_results=5000,
            ):
                client.set_tag(run.info.run_id, "xlrec.status", status)
                client.set_tag(run.info.run_id, "xlrec.failure_reason", reason)
                client.set_terminated(run.info.run_id, status)
            mlflow.set_tags({"xlrec.status": status, "xlrec.failure_reason": reason})
            mlflow.end_run(status=status)
        except Exception as close_exc:
            print(f"[xlrec] could not mark the sweep's runs {status}: {close_exc}", file=sys.stderr)


# --- the trial side ---------------------------------------------------------------------------


def end_pruned(run_id: str | None, epoch: int) -> None:
    """Tune stopped the trial (ASHA pruned it): its run, if still the active one, ends KILLED
    as pruned. Pruning is not a failure: no failure reason, the epoch it stopped at instead."""
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        return
    try:  # the tracker's on_exception then finds the run closed and leaves it alone
        mlflow.set_tags({"xlrec.status": "pruned", "xlrec.pruned": "true", "xlrec.pruned_after_epoch": str(epoch)})
    finally:
        mlflow.end_run(status="KILLED")


def finished_run_metrics(uri: str, run_id: str) -> dict[str, Any] | None:
    """The metrics and tags of a run that already ended FINISHED with its final results (a trial
    Tune restarts after it had finished: its results are reported, not trained and logged again)."""
    run = MlflowClient(uri).get_run(run_id)
    if run.info.status != "FINISHED" or "test_recall_at_10" not in run.data.metrics:
        return None
    return {**run.data.metrics, "model_version": int(run.data.tags.get("xlrec.model_version", 0) or 0)}


def earlier_attempt(uri: str, parent_run_id: str, trial_id: str) -> str | None:
    """The run an earlier attempt of this trial opened (a driver killed before the trial's first
    checkpoint leaves one; the resumed trial continues in it instead of logging the trial twice)."""
    found = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_run(parent_run_id).info.experiment_id],
        f"tags.`xlrec.sweep_run_id` = '{parent_run_id}' and tags.`xlrec.trial_id` = '{trial_id}'",
        max_results=1,
    )
    return found[0].info.run_id if found else None

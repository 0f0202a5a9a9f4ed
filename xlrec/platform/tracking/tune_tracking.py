"""`xlrec tune`'s own run in MLflow: the parent of one search sweep per model and of the
confirmation grid (their parent runs carry `mlflow.parentRunId` = this run, so the UI nests
tuning > sweep > trials), with the tuning's settings, each model's budget and search outcome, the
tuned defaults file and the report.

Through `MlflowClient`, not the fluent API: the sweeps it runs hold the process's active run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from xlrec.errors import ConfigError
from xlrec.platform.mlflow_env import quiet_links_for
from xlrec.platform.tracking.run_lifecycle import end_status, process_tags
from xlrec.redact import redact

TUNE_TAG = "xlrec.tune"  # "parent" on a tuning's own run


class TuneRecorder:
    def __init__(self, uri: str):
        quiet_links_for(uri)
        self.client = MlflowClient(uri)
        self.run_id = ""
        self.experiment_id = ""

    def open(self, name: str, experiment: str, resume: bool) -> bool:
        """Start the tuning run `name`, or with `resume` continue the one of that name; True when resumed."""
        exp = self.client.get_experiment_by_name(experiment)
        experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        found = self.client.search_runs(
            [experiment_id], f"tags.`{TUNE_TAG}` = 'parent' and attributes.run_name = '{name}'", max_results=1
        )
        if found and not resume:
            raise ConfigError(
                f"A tuning named {name!r} already ran in experiment {experiment!r}. Pass --resume to continue it "
                f"(its finished searches are kept), or give this one another --name."
            )
        if resume and not found:
            raise ConfigError(
                f"No tuning named {name!r} in experiment {experiment!r} to resume. Drop --resume to start it, "
                f"or pass the --name (and --experiment) of the tuning that stopped."
            )
        self.experiment_id = experiment_id
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment_id, run_name=name, tags={TUNE_TAG: "parent", **process_tags()})
            self.run_id = run.info.run_id
        return bool(found)

    def sweep(self, name: str) -> tuple[str, str] | None:
        """(run id, status) of the sweep `name` in this experiment, if one ran."""
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`xlrec.sweep` = 'parent' and attributes.run_name = '{name}'",
            max_results=1,
        )
        return (runs[0].info.run_id, runs[0].info.status) if runs else None

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's params, metrics and tags."""
        data = self.client.get_run(run_id).data
        return {"params": dict(data.params), "metrics": dict(data.metrics), "tags": dict(data.tags)}

    def trial_runs(self, sweep_run_id: str) -> list[dict[str, Any]]:
        """The training runs of a sweep: status, params and metrics of each."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`xlrec.sweep_run_id` = '{sweep_run_id}'", max_results=5000
        )
        return [
            {"run_id": r.info.run_id, "status": r.info.status, "params": dict(r.data.params), "metrics": r.data.metrics}
            for r in runs
        ]

    def log_params(self, params: dict[str, Any]) -> None:
        existing = self.client.get_run(self.run_id).data.params  # a resumed tuning logged them already
        for key, value in params.items():
            if key not in existing:
                self.client.log_param(self.run_id, key, redact(str(value))[:6000])

    def log_metrics(self, metrics: dict[str, float], run_id: str | None = None) -> None:
        for key, value in metrics.items():
            self.client.log_metric(run_id or self.run_id, key, float(value))

    def set_tags(self, tags: dict[str, str], run_id: str | None = None) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id or self.run_id, key, value)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, redact(text), name)

    def end(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")

    def abort(self, exc: BaseException) -> None:
        """The tuning ends early: KILLED (a signal) or FAILED (an error), with the reason; never raises."""
        if not self.run_id:
            return
        status, reason = end_status(exc)
        try:
            self.client.set_tag(self.run_id, "xlrec.status", status)
            self.client.set_tag(self.run_id, "xlrec.failure_reason", reason[:4000])
            self.client.set_terminated(self.run_id, status)
        except Exception:  # the original error matters more; `xlrec runs reap` can finish this
            pass

"""Reading runs back from MLflow for reports: an experiment's (or one sweep's) training runs, the
files each finished run logged (history, per-user test ranks, parameter table, item table), the
datasets' Table-1 statistics; and logging a finished report back. The report (xlrec.report) reads
runs only through here and never imports MLflow.

Everything here comes from a tracking server, so it is read as untrusted data: CSV and
Parquet only (no pickles), columns checked, a file that is missing or malformed is skipped
with a note the report prints instead of failing.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from xlrec.errors import ConfigError, XlrecError
from xlrec.platform.tracking.server import local_artifact_dir, served_artifacts_root
from xlrec.settings import metric_key

if TYPE_CHECKING:
    from mlflow import MlflowClient

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# file -> the columns a report needs from it
FILES = {
    "history.csv": ("epoch", "train_loss", "val_ndcg_at_10"),
    "test_per_user.parquet": ("user_index", "target_item", "rank", "top10"),
    "parameters.csv": ("component", "parameter", "count"),
    "items.parquet": ("item_index", "item_id", "title", "interactions"),
    "item_vectors.parquet": ("item_index", "e0"),
    "positions.parquet": ("signal", "block", "distance", "value"),
}
# files runs before 2026-11-30 (and pop runs; RNNs have no positions) do not have: a missing one is not a note
OPTIONAL = {"item_vectors.parquet", "positions.parquet"}


@dataclass
class ReportRuns:
    experiment: str
    parent_id: str | None
    runs: pd.DataFrame  # the export's rows (xlrec.report.tables), every status
    files: dict[str, dict[str, pd.DataFrame]]  # run id -> file name -> its table
    datasets: dict[str, dict[str, str]]  # dataset -> Table-1 statistics (the run's input tags)
    notes: list[str] = field(default_factory=list)  # what could not be read, for the report
    artifacts_root: Path | None = None  # a local sweep store's artifact folder (server.served_artifacts_root)
    # sweep parent id -> (GPUs per trial, trials at once) where its trials shared GPUs
    gpu_sharing: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def finished(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "FINISHED"]

    def file(self, run_id: str, name: str) -> pd.DataFrame | None:
        return self.files.get(run_id, {}).get(name)


def search_training_runs(experiment: str, parent_id: str | None = None) -> pd.DataFrame:
    """One row per training run of `experiment` in the current tracking store (sweep parents and
    runs without a model param excluded), or of the sweep `parent_id` only: run columns, every
    param and metric, the sweep link and the device, as MLflow returns them (xlrec.report.tables
    puts them in the export's canonical form)."""
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise XlrecError(
            f"Experiment {experiment!r} does not exist at {mlflow.get_tracking_uri()}. "
            f"Pass --experiment with an existing name (see the MLflow UI) and check --tracking-uri."
        )
    where = "params.model != ''"
    if parent_id:
        where += f" and tags.`xlrec.sweep_run_id` = '{parent_id}'"
    df = mlflow.search_runs([exp.experiment_id], filter_string=where)
    if len(df) == 0:
        return pd.DataFrame(columns=["run_id", "status", "params.model"])
    if "tags.xlrec.sweep" in df.columns:  # a sweep's parent logs its model too, and shares the experiment
        df = df[df["tags.xlrec.sweep"] != "parent"]
    df = df[df["params.model"].notna()].rename(columns={"tags.mlflow.runName": "run_name"})
    df["start_time"] = df["start_time"].map(lambda t: t.isoformat() if pd.notna(t) else None)
    return df


def run_timing(run_id: str) -> dict[str, float]:
    """The epochs and epoch time a finished training run logged (what `xlrec evaluate` reports beside
    its re-computed metrics)."""
    import mlflow

    metrics = mlflow.get_run(run_id).data.metrics
    return {
        "epochs_run": int(metrics.get("epochs_run", 0)),
        "best_epoch": int(metrics.get("best_epoch", 0)),
        "avg_epoch_time_s": round(metrics.get("avg_epoch_time_s", 0.0), 4),
    }


def latest_experiment() -> str:
    """The experiment of the most recently started xlrec run (what `xlrec report` with no
    --experiment reports: the README's main job, right after it ran)."""
    import mlflow

    runs = mlflow.search_runs(
        search_all_experiments=True, filter_string="params.model != ''", max_results=1, order_by=["start_time DESC"]
    )
    if len(runs) == 0:
        raise XlrecError(
            f"No xlrec run at {mlflow.get_tracking_uri()}: nothing to report. Run the main job (README) or "
            f"`xlrec train` first, or pass --tracking-uri of the store that holds your runs."
        )
    return mlflow.get_experiment(runs["experiment_id"].iloc[0]).name


def parent_experiment(parent_id: str) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    if not RUN_ID.match(parent_id):
        raise ConfigError(
            f"--parent {parent_id!r} is not an MLflow run id (32 hexadecimal characters); copy the sweep's parent "
            f"run id from the MLflow UI or the sweep's first output line."
        )
    try:
        run = mlflow.get_run(parent_id)
    except MlflowException:
        raise XlrecError(
            f"Run {parent_id} does not exist at {mlflow.get_tracking_uri()}. Pass the id of a sweep's parent run "
            f"(MLflow UI) and check --tracking-uri."
        ) from None
    return mlflow.get_experiment(run.info.experiment_id).name


def _gpu_sharing(parent_ids: list[str]) -> dict[str, tuple[float, int]]:
    """The sweeps whose trials held a fraction of a GPU each (their parents' `gpus_per_trial`):
    those trials' epoch times and memory were measured beside other trials on the same card."""
    import mlflow

    shared = {}
    for pid in parent_ids:
        if not RUN_ID.match(pid):  # a tag is untrusted text
            continue
        try:
            params = mlflow.get_run(pid).data.params
            # sweeps log their spec's keys; older ones logged the bare names
            share = float(params.get("resources.gpus_per_trial", params.get("gpus_per_trial", 0)))
            at_once = int(params.get("resources.max_concurrent", params.get("max_concurrent", 0)))
        except (XlrecError, ValueError, mlflow.exceptions.MlflowException):
            continue  # a deleted or foreign parent: nothing to say about sharing
        if 0 < share < 1:
            shared[pid] = (share, at_once)
    return shared


def _read(path: Path, name: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    except pd.errors.EmptyDataError:  # a run with no epochs (popularity) logs an empty history.csv
        return pd.DataFrame(columns=list(FILES[name]))
    # runs logged before metric keys were one spelling wrote history.csv as val_ndcg@10
    df = df.rename(columns={c: metric_key(c) for c in df.columns if "@" in str(c)})
    missing = [c for c in FILES[name] if c not in df.columns]
    if missing:
        raise ValueError(f"no {', '.join(missing)} column")
    return df


def _fetch(run_id: str, names: list[str], tmp: Path, root: Path | None) -> tuple[dict[str, pd.DataFrame], list[str]]:
    import mlflow

    got, notes = {}, []
    here = local_artifact_dir(mlflow.get_run(run_id).info.artifact_uri, root)
    for name in names:
        try:
            if here is not None:
                local = here / name
            else:
                local = Path(
                    mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, dst_path=str(tmp / run_id))
                )
            got[name] = _read(local, name)
        except Exception as exc:  # a run from an older version, or a file someone replaced
            if name in OPTIONAL and not (here is not None and (here / name).is_file()):
                continue  # not logged (remotely: not told apart from unreadable)
            notes.append(f"run {run_id}: {name} unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
    return got, notes


def _dataset_stats(run_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    run = MlflowClient().get_run(run_id)
    stats: dict[str, str] = {}
    for inp in run.inputs.dataset_inputs if run.inputs else []:
        tags = {t.key: t.value for t in inp.tags}
        if "users" in tags:
            stats = tags
            break
    if run.data.tags.get("xlrec.data_warning"):  # e.g. the partial ML-1M copy: said next to its numbers
        stats["data_warning"] = run.data.tags["xlrec.data_warning"]
    return stats


def collect(
    experiment: str | None,
    parent_id: str | None,
    shape: Callable[[pd.DataFrame], pd.DataFrame],
    workers: int = 8,
) -> ReportRuns:
    """The runs and files a report needs, downloaded in parallel (a 36-run grid in seconds);
    a local sweep store's files are read where its server keeps them. `shape` turns the runs
    MLflow returns into the report's table of runs (xlrec.report.runs.shape_runs)."""
    import mlflow

    root = served_artifacts_root(mlflow.get_tracking_uri())
    if parent_id:
        found = parent_experiment(parent_id)
        if experiment and experiment != found:
            raise ConfigError(
                f"--parent {parent_id} belongs to experiment {found!r}, not {experiment!r}; drop --experiment "
                f"or pass the right one."
            )
        experiment = found
    experiment = experiment or latest_experiment()
    runs = shape(search_training_runs(experiment, parent_id))
    done = runs[runs["status"] == "FINISHED"]
    files: dict[str, dict[str, pd.DataFrame]] = {}
    notes: list[str] = []
    first_of_dataset = set(done.drop_duplicates("params.dataset")["run_id"])
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(workers) as pool:
        jobs = {
            rid: pool.submit(
                _fetch,
                rid,
                [
                    n
                    for n in FILES
                    if (n != "items.parquet" or rid in first_of_dataset)
                    and (n not in ("item_vectors.parquet", "positions.parquet") or model != "pop")
                ],
                Path(tmp),
                root,
            )
            for rid, model in zip(done["run_id"], done["params.model"])
        }
        firsts = done.drop_duplicates("params.dataset")
        stats = {d: pool.submit(_dataset_stats, rid) for d, rid in zip(firsts["params.dataset"], firsts["run_id"])}
        for rid, job in jobs.items():
            files[rid], run_notes = job.result()
            notes += run_notes
        datasets = {d: job.result() for d, job in stats.items()}
    parents = sorted(done.get("tags.xlrec.sweep_run_id", pd.Series(dtype=object)).dropna().unique())
    return ReportRuns(experiment, parent_id, runs, files, datasets, notes, root, _gpu_sharing(parents))


def _log_folder(client: MlflowClient, run_id: str, out: Path, root: Path | None) -> None:
    here = local_artifact_dir(client.get_run(run_id).info.artifact_uri, root)
    if here is None:
        client.log_artifacts(run_id, str(out), "report")
    else:  # a local sweep store: where its server would put them (server.local_artifact_dir)
        shutil.copytree(out, here / "report", dirs_exist_ok=True)


def log_report(rr: ReportRuns, out: Path) -> str:
    """Log a report's folder under `report/` of the sweep parent (`--parent`), else of the run
    `mlflow run . -e report` made, else of a new run named `report` in the experiment (a run with no
    `model` param, so exports and tables never count it as a training run); returns the run id."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    if rr.parent_id:
        _log_folder(client, rr.parent_id, out, rr.artifacts_root)
        return rr.parent_id
    adopted = os.environ.get("MLFLOW_RUN_ID")  # `mlflow run . -e report` made the report's run
    if adopted:
        client.set_tag(adopted, "xlrec.report", "true")
        _log_folder(client, adopted, out, rr.artifacts_root)
        return adopted
    exp = mlflow.get_experiment_by_name(rr.experiment)
    assert exp is not None  # collect() found it
    run = client.create_run(exp.experiment_id, run_name="report", tags={"xlrec.report": "true"})
    try:
        _log_folder(client, run.info.run_id, out, rr.artifacts_root)
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id

"""What a report reads from MLflow: an experiment's (or one sweep's) training runs, the files
each finished run logged (history, per-user test ranks, parameter table, item table) and the
datasets' Table-1 statistics. The only MLflow calls of the report; the rest works on this.

Everything here comes from a tracking server, so it is read as untrusted data: CSV and
Parquet only (no pickles), columns checked, a file that is missing or malformed is skipped
with a note the report prints instead of failing.
"""

from __future__ import annotations

import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xlrec.errors import ConfigError, XlrecError
from xlrec.platform.reports import export_runs
from xlrec.platform.server import local_artifact_dir, served_artifacts_root

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# file -> the columns a report needs from it
FILES = {
    "history.csv": ("epoch", "train_loss", "val_ndcg@10"),
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
    runs: pd.DataFrame  # the export's rows (xlrec.platform.reports), every status
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


def with_user_shares(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs on a share of a dataset's users (`prep.user_fraction` < 1, a scaling study) are on a
    dataset of their own: `ml-1m (25% of users)`; `dataset_base` and `user_fraction` keep the origin."""
    runs = runs.copy()
    base = runs.get("params.dataset", pd.Series(None, index=runs.index, dtype=object))
    share = pd.to_numeric(runs.get("params.prep.user_fraction", pd.Series(1.0, index=runs.index)), errors="coerce")
    share = share.fillna(1.0)
    runs["dataset_base"], runs["user_fraction"] = base, share
    part = (share < 1.0) & base.notna()
    runs.loc[part, "params.dataset"] = [f"{d} ({f:.0%} of users)" for d, f in zip(base[part], share[part])]
    return runs


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


def _parent_experiment(parent_id: str) -> str:
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
            share, at_once = float(params.get("gpus_per_trial", 0)), int(params.get("max_concurrent", 0))
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


def collect(experiment: str | None, parent_id: str | None, workers: int = 8) -> ReportRuns:
    """The runs and files a report needs, downloaded in parallel (a 36-run grid in seconds);
    a local sweep store's files are read where its server keeps them."""
    import mlflow

    root = served_artifacts_root(mlflow.get_tracking_uri())
    if parent_id:
        found = _parent_experiment(parent_id)
        if experiment and experiment != found:
            raise ConfigError(
                f"--parent {parent_id} belongs to experiment {found!r}, not {experiment!r}; drop --experiment "
                f"or pass the right one."
            )
        experiment = found
    experiment = experiment or latest_experiment()
    runs = with_user_shares(export_runs(experiment, parent_id))
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

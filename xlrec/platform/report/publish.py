"""Write a report's folder in one step and log it to MLflow.

The folder is built beside its destination and renamed into place, so an error leaves the
previous report (or nothing), never half of a new one. The report is logged on the sweep's
parent run (`--parent`), else on the run `mlflow run . -e report` made, else on a new run
named `report` in the experiment; that run has no
`model` param, so the exports and tables never count it as a training run."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import mlflow

from xlrec.errors import ConfigError
from xlrec.platform.report import sections
from xlrec.platform.report.document import to_html, to_markdown
from xlrec.platform.report.runs import ReportRuns
from xlrec.platform.server import local_artifact_dir


def write(rr: ReportRuns, out: Path) -> Path:
    """Build report.md, report.html, figures/ and data/ under `out` (replacing an older report)."""
    out = out.resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise ConfigError(f"Cannot write the report under {out}: {exc}. Pass --out with a writable directory.") from exc
    try:
        parts = sections.build(rr, staging)
        title = f"xlrec report: {rr.experiment}" + (f" (sweep {rr.parent_id})" if rr.parent_id else "")
        (staging / "report.md").write_text(to_markdown(title, parts))
        (staging / "report.html").write_text(to_html(title, parts))
        old = out.with_name(f".{out.name}.old.{os.getpid()}")
        if out.exists():
            if not (out / "report.md").exists() and any(out.iterdir()):
                raise ConfigError(
                    f"{out} exists and is not an xlrec report folder; pass --out with a new or report directory."
                )
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _log_folder(client: mlflow.MlflowClient, run_id: str, out: Path, root: Path | None) -> None:
    here = local_artifact_dir(client.get_run(run_id).info.artifact_uri, root)
    if here is None:
        client.log_artifacts(run_id, str(out), "report")
    else:  # a local sweep store: where its server would put them (server.local_artifact_dir)
        shutil.copytree(out, here / "report", dirs_exist_ok=True)


def log(rr: ReportRuns, out: Path) -> str:
    """Log the folder under `report/` of the sweep parent or of a `report` run; returns the run id."""
    client = mlflow.MlflowClient()
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

"""Write a report's folder in one step and log it to MLflow.

The folder is built beside its destination and renamed into place, so an error leaves the
previous report (or nothing), never half of a new one; xlrec.platform.tracking.read logs it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from xlrec.errors import ConfigError
from xlrec.platform.tracking import read
from xlrec.report import sections
from xlrec.report.document import Section, to_html, to_markdown
from xlrec.report.runs import ReportRuns


def write(
    rr: ReportRuns, out: Path, extra: Sequence[Section] = (), data: Mapping[str, pd.DataFrame] | None = None
) -> Path:
    """Build report.md, report.html, figures/ and data/ under `out` (replacing an older report);
    `extra` sections (their tables' numbers in `data`, by file name under data/) join the report's."""
    out = out.resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise ConfigError(f"Cannot write the report under {out}: {exc}. Pass --out with a writable directory.") from exc
    try:
        parts = sections.build(rr, staging, extra)
        for name, frame in (data or {}).items():
            (staging / "data").mkdir(exist_ok=True)
            frame.to_csv(staging / "data" / name, index=False)
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


def log(rr: ReportRuns, out: Path) -> str:
    """Log the folder to MLflow (xlrec.platform.tracking.read.log_report); returns the run id."""
    return read.log_report(rr, out)

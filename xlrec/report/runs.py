"""The report's table of runs: MLflow's runs (read by xlrec.platform.tracking.read) in the
export's canonical form, with runs on a share of a dataset's users as datasets of their own."""

from __future__ import annotations

import pandas as pd

from xlrec.platform.tracking import read
from xlrec.platform.tracking.read import ReportRuns
from xlrec.report.tables import normalise, with_protocols

__all__ = ["ReportRuns", "collect", "shape_runs", "with_user_shares"]


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


def shape_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return with_protocols(with_user_shares(normalise(runs)))


def collect(experiment: str | None, parent_id: str | None) -> ReportRuns:
    """The runs and files of a report (xlrec.platform.tracking.read.collect)."""
    return read.collect(experiment, parent_id, shape_runs)

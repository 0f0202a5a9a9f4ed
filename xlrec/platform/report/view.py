"""What every section reads: the collected runs narrowed to what a report compares (finished
training runs; one run per model, seed and cell, chosen on validation), and small helpers
that write a section's CSVs and figures under the report folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xlrec.platform.report.runs import ReportRuns
from xlrec.platform.reports import MISSING

REFERENCE = "xlstm"  # the model every baseline is tested against (the platform's question)
ALPHA = 0.05
STATS = ("users", "items", "interactions", "avg_len", "sparsity")
USED_METRICS = (
    "test_ndcg_at_10",
    "test_coverage_at_10",
    "best_val_ndcg_at_10",
    "best_val_recall_at_10",
    "avg_epoch_time_s",
    "params_total",
    "cold_users",
    "cold_model_recall_at_10",
    "cold_pop_recall_at_10",
    "cold_genre_recall_at_10",
    "cold_demographic_recall_at_10",
)


class RunsView:
    """The runs of one report, and where its files go; `cannot` collects what it cannot show."""

    def __init__(self, rr: ReportRuns, out: Path):
        self.rr, self.out = rr, out
        self.cannot: list[str] = []
        (out / "figures").mkdir(parents=True, exist_ok=True)
        (out / "data").mkdir(parents=True, exist_ok=True)
        done = rr.finished.copy()
        done["params.max_len"] = done.get("params.max_len", pd.Series(MISSING, index=done.index)).fillna(MISSING)
        done["params.seed"] = done.get("params.seed", pd.Series(MISSING, index=done.index)).fillna(MISSING)
        for key in USED_METRICS:  # runs of older versions (or hand-logged ones) may lack some
            if f"metrics.{key}" not in done:
                done[f"metrics.{key}"] = np.nan
        self.done = done[done["params.model"].notna()]
        # One run per (dataset, max_len, model, seed): a search has many trials per seed, and the
        # one that represents the model is chosen as everywhere else, on validation (never test).
        order = self.done.sort_values("metrics.best_val_recall_at_10", ascending=False, na_position="last")
        keys = ["params.dataset", "params.max_len", "params.model", "params.seed"]
        self.chosen = order.drop_duplicates(keys).sort_index()
        self.searched = len(self.chosen) < len(self.done)

    # --- helpers ------------------------------------------------------------------------
    def csv(self, df: pd.DataFrame, name: str) -> str:
        df.to_csv(self.out / "data" / name, index=False)
        return name

    def png(self, name: str) -> Path:
        return self.out / "figures" / name

    def per_user(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The per-user test tables of `rows` (runs), with each run's seed."""
        parts = []
        for rid, seed in zip(rows["run_id"], rows["params.seed"]):
            t = self.rr.file(rid, "test_per_user.parquet")
            if t is not None:
                parts.append(t.assign(seed=seed, run_id=rid))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def items(self, dataset: str) -> pd.DataFrame | None:
        for rid in self.chosen.loc[self.chosen["params.dataset"] == dataset, "run_id"]:
            t = self.rr.file(rid, "items.parquet")
            if t is not None:
                return t
        return None

    def cells(self):
        """(dataset, max_len, runs of that cell) for every cell with finished runs."""
        for (dataset, max_len), g in self.chosen.groupby(["params.dataset", "params.max_len"], sort=True):
            yield str(dataset), str(max_len), g

    # --- sections -----------------------------------------------------------------------

"""What every section reads: the collected runs narrowed to what a report compares (finished
training runs; one run per model, seed and cell, chosen on validation), and small helpers
that write a section's CSVs and figures under the report folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xlrec.report.document import file_name
from xlrec.report.runs import ReportRuns
from xlrec.report.tables import MISSING
from xlrec.settings import BEST_VAL_SELECTION_KEY

REFERENCE = "xlstm"  # the model every baseline is tested against (the platform's question)
ALPHA = 0.05
STATS = ("users", "items", "interactions", "avg_len", "sparsity")
USED_METRICS = (
    "test_ndcg_at_10",
    "test_coverage_at_10",
    "best_val_ndcg_at_10",
    BEST_VAL_SELECTION_KEY,
    "avg_epoch_time_s",
    "params_total",
    "cold_users",
    "cold_model_recall_at_10",
    "cold_pop_recall_at_10",
    "cold_genre_recall_at_10",
    "cold_demographic_recall_at_10",
)


PER_MODEL = "per-model"  # the max_len label of a cell whose models each ran at their own default


def comparison_cells(chosen: pd.DataFrame) -> pd.Series:
    """The max_len label each run is compared under. Where a dataset's runs vary max_len for a model
    (a sequence-length grid), models meet at equal max_len; where each model ran at one max_len of
    its own (every model at its shipped defaults: ML-100K's xLSTM at 100, SASRec at 50), they all
    meet in one cell labelled `per-model`, or else the defaults would keep them from ever being
    compared."""
    lens = chosen["params.max_len"].astype(str)
    swept = chosen.assign(L=lens).groupby(["params.dataset", "params.model"])["L"].transform("nunique") > 1
    dataset_swept = swept.groupby(chosen["params.dataset"]).transform("any")
    single = lens.groupby(chosen["params.dataset"]).transform("nunique") == 1
    return lens.where(dataset_swept | single, PER_MODEL)


def figured_runs(chosen: pd.DataFrame) -> pd.DataFrame:
    """The runs the per-dataset figure sections draw. Runs on a share of a dataset's users (a
    scaling study) are in Table 4 and the scaling figure; beside the whole dataset's runs their own
    curves, projections and top-10s would repeat the whole dataset's at a fraction of its data and
    multiply the report's size."""
    if "user_fraction" not in chosen:
        return chosen
    whole = set(chosen.loc[chosen["user_fraction"] >= 1.0, "dataset_base"])
    return chosen[(chosen["user_fraction"] >= 1.0) | ~chosen["dataset_base"].isin(whole)]


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
        order = self.done.sort_values(f"metrics.{BEST_VAL_SELECTION_KEY}", ascending=False, na_position="last")
        keys = ["params.dataset", "params.max_len", "params.model", "params.seed"]
        self.chosen = order.drop_duplicates(keys).sort_index()
        self.chosen["cell"] = comparison_cells(self.chosen)
        self.figured = figured_runs(self.chosen)
        self.searched = len(self.chosen) < len(self.done)

    # --- helpers ------------------------------------------------------------------------
    def csv(self, df: pd.DataFrame, name: str) -> str:
        df.to_csv(self.out / "data" / file_name(name), index=False)
        return file_name(name)

    def png(self, name: str) -> Path:
        return self.out / "figures" / file_name(name)

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
        """(dataset, max_len label, runs of that cell) for every cell with finished runs that the
        figure sections draw (`figured_runs`): the models compared with each other (`comparison_cells`)."""
        for (dataset, cell), g in self.figured.groupby(["params.dataset", "cell"], sort=True):
            yield str(dataset), str(cell), g

    # --- sections -----------------------------------------------------------------------

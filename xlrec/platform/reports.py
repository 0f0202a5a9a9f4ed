"""Reports from MLflow: the runs of an experiment as a table, aggregated like the paper's Table 4."""

from __future__ import annotations

import pandas as pd

from xlrec.errors import XlrecError

COLUMNS = {
    "params.model": "model",
    "params.dataset": "dataset",
    "params.max_len": "max_len",
    "params.seed": "seed",
    "metrics.params_total": "params_total",
    "metrics.best_val_recall_at_10": "val_recall_at_10",
    "metrics.test_recall_at_10": "test_recall_at_10",
    "metrics.test_ndcg_at_10": "test_ndcg_at_10",
    "metrics.test_mrr_at_10": "test_mrr_at_10",
    "metrics.avg_epoch_time_s": "avg_epoch_time_s",
    "metrics.gpu_peak_allocated_mb": "gpu_peak_allocated_mb",
    "status": "status",
    "run_id": "mlflow_run_id",
}


def runs_table(experiment: str) -> pd.DataFrame:
    """One row per training run of `experiment` (sweep parents excluded)."""
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise XlrecError(
            f"Experiment {experiment!r} does not exist at {mlflow.get_tracking_uri()}. "
            f"Pass --experiment with an existing name (see the MLflow UI) and check --tracking-uri."
        )
    df = mlflow.search_runs([exp.experiment_id], filter_string="params.model != ''")
    if "tags.xlrec.sweep" in df.columns:  # a sweep's parent logs its model too, and shares the experiment
        df = df[df["tags.xlrec.sweep"] != "parent"]
    keep = {k: v for k, v in COLUMNS.items() if k in df.columns}
    out = df[list(keep)].rename(columns=keep)
    if "max_len" in out:
        out["max_len"] = out["max_len"].astype(int)
    return out


def aggregate_table4(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (model, dataset, max_len) of finished runs: the paper's Table 4 layout."""
    done = table[table["status"] == "FINISHED"]
    out = []
    for (model, dataset, max_len), g in done.groupby(["model", "dataset", "max_len"]):
        row = {
            "model": model,
            "dataset": dataset,
            "max_len": max_len,
            "seeds": len(g),
            "params": int(g["params_total"].iloc[0]) if g["params_total"].notna().any() else None,
        }
        for key, label in (
            ("test_recall_at_10", "Recall@10"),
            ("test_ndcg_at_10", "NDCG@10"),
            ("test_mrr_at_10", "MRR@10"),
        ):
            row[label] = f"{g[key].mean():.4f} ± {g[key].std(ddof=1) if len(g) > 1 else 0.0:.4f}"
        row["avg_epoch_time_s"] = round(float(g["avg_epoch_time_s"].mean()), 3)
        out.append(row)
    return pd.DataFrame(out)

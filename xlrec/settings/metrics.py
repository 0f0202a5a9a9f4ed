"""The metric that selects: one name for it, and the one rule for a metric's logged key.

Early stopping, ASHA, Optuna, a sweep's best trial, the registry's champion and a report's
choice of run all select on validation Recall@10 (a sweep spec may ask for NDCG@10 instead).
Metrics are computed as `recall@10` (xlrec.training.metrics); MLflow keys cannot hold '@', so a
metric is logged as `metric_key(name, split)`, e.g. `val_recall_at_10`, and nowhere else is that
spelling written by hand.
"""

from __future__ import annotations

SELECTION_METRIC = "recall@10"
SELECTION_METRIC_LABEL = "Recall@10"


def metric_key(name: str, split: str = "") -> str:
    """The logged key of metric `name` on `split` (val, test, best_val, cold_model...):
    metric_key("recall@10", "val") == "val_recall_at_10"."""
    key = name.replace("@", "_at_")
    return f"{split}_{key}" if split else key


# what every epoch logs, and what a finished run logs as its best validation score
VAL_SELECTION_KEY = metric_key(SELECTION_METRIC, "val")
BEST_VAL_SELECTION_KEY = metric_key(SELECTION_METRIC, "best_val")

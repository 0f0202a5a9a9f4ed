"""The report's section on `xlrec tune`: what each model's search got (its budget, trials and time),
what it found (the winner and its validation score), how much each setting mattered (Optuna's
importances) and how the winner held over the confirmation seeds. Built from plain rows: the
tuning driver (xlrec.sweeps.tuning) reads them from MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from xlrec.report.document import Section, Table

DATA_FILE = "tuning.csv"


@dataclass
class ModelSearch:
    """One model's search and its confirmation."""

    model: str
    trials_finished: int
    trials_pruned: int
    trials_failed: int
    seconds: float
    best_val: float | None  # the search's best trial, one seed
    winner: dict[str, Any] = field(default_factory=dict)
    importances: dict[str, float] = field(default_factory=dict)
    confirm_val: list[float] = field(default_factory=list)  # per seed
    confirm_test: list[float] = field(default_factory=list)  # test Recall@10 per seed


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "–"
    s = pd.Series(values, dtype=float)
    return f"{s.mean():.4f} ± {s.std(ddof=1):.4f}" if len(s) > 1 else f"{s.mean():.4f}"


def _settings(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def numbers(searches: Sequence[ModelSearch]) -> pd.DataFrame:
    """The section's numbers, one row per model (what data/tuning.csv holds)."""
    rows = []
    for s in searches:
        row: dict[str, Any] = {
            "model": s.model,
            "trials_finished": s.trials_finished,
            "trials_pruned": s.trials_pruned,
            "trials_failed": s.trials_failed,
            "search_seconds": round(s.seconds, 1),
            "search_best_val_recall_at_10": s.best_val,
            "confirm_seeds": len(s.confirm_val),
            "confirm_val_recall_at_10_mean": pd.Series(s.confirm_val, dtype=float).mean(),
            "confirm_test_recall_at_10_mean": pd.Series(s.confirm_test, dtype=float).mean(),
        }
        row.update({f"winner.{k}": v for k, v in s.winner.items()})
        row.update({f"importance.{k}": round(v, 4) for k, v in s.importances.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def section(searches: Sequence[ModelSearch], budget_rule: str) -> Section:
    """The tuning section: budgets and outcomes, then what each search found and what mattered."""
    s = Section("Tuning: the search each model got")
    s.blocks.append(budget_rule)
    budget = pd.DataFrame(
        [
            {
                "model": x.model,
                "trials (finished / pruned / failed)": f"{x.trials_finished} / {x.trials_pruned} / {x.trials_failed}",
                "search time": f"{x.seconds:.0f} s",
                "best val Recall@10 (search, 1 seed)": "–" if x.best_val is None else f"{x.best_val:.4f}",
                "val Recall@10 (confirmation)": _mean_std(x.confirm_val),
                "test Recall@10 (confirmation)": _mean_std(x.confirm_test),
            }
            for x in searches
        ]
    )
    s.blocks.append(
        Table(
            budget,
            "Each model's search budget and outcome; the confirmation re-trains the winner over the seeds "
            "(mean ± std). The search and the choice read validation only; test is read once, here.",
            DATA_FILE,
        )
    )
    found = pd.DataFrame(
        [
            {
                "model": x.model,
                "winner (written to the tuned defaults)": _settings(x.winner) or "no finished trial",
                "importance (Optuna fANOVA, share of val Recall@10's variance)": (
                    ", ".join(f"{k} {v:.2f}" for k, v in sorted(x.importances.items(), key=lambda kv: -kv[1]))
                    or "– (needs four finished trials)"
                ),
            }
            for x in searches
        ]
    )
    s.blocks.append(Table(found, "What each search chose, and how much each searched setting mattered"))
    return s

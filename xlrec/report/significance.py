"""Is one model's lead real? Paired tests over the same test users.

Two runs of different models on the same dataset, split and seed score the same users, so
their per-user NDCG@10 pair up (joined on seed and user); pairs are pooled over the seeds both
models ran. Per comparison: the Wilcoxon signed-rank test (scipy; users where both score the
same, mostly both missing the top-10, carry no sign and are dropped, its default), a paired
bootstrap 95% interval of the mean difference (users resampled with replacement, seeded), and
Holm's step-down correction across the comparisons made on one dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def ndcg_at_10(ranks: np.ndarray) -> np.ndarray:
    """Per-user NDCG@10 from the target's 1-based rank (one relevant item: IDCG = 1); the
    formula of xlrec.training.metrics, per user instead of averaged."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0)


def paired(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-user NDCG@10 of two models aligned on (seed, user_index); each frame holds the
    per-user test table of every seed with a `seed` column."""
    joined = a[["seed", "user_index", "rank"]].merge(
        b[["seed", "user_index", "rank"]], on=["seed", "user_index"], suffixes=("_a", "_b")
    )
    return ndcg_at_10(joined["rank_a"].to_numpy()), ndcg_at_10(joined["rank_b"].to_numpy())


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    pairs: int
    mean_a: float
    mean_b: float
    diff: float  # mean of a - b
    ci_low: float
    ci_high: float
    p: float  # Wilcoxon, two-sided
    p_holm: float = float("nan")


def compare(a_name: str, b_name: str, a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> Comparison:
    from scipy.stats import wilcoxon

    d = a - b
    n = len(d)
    if n == 0:
        return Comparison(a_name, b_name, 0, *(float("nan"),) * 6)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    low, high = np.quantile(boots, [0.025, 0.975])
    p = float(wilcoxon(a, b).pvalue) if np.any(d != 0) else 1.0
    return Comparison(a_name, b_name, n, float(a.mean()), float(b.mean()), float(d.mean()), float(low), float(high), p)


def holm(comparisons: list[Comparison]) -> list[Comparison]:
    """Holm-adjusted p-values (monotone, capped at 1), in the input order."""
    from dataclasses import replace

    m = len(comparisons)
    order = sorted(range(m), key=lambda i: comparisons[i].p)
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * comparisons[i].p))
        adjusted[i] = running
    return [replace(c, p_holm=p) for c, p in zip(comparisons, adjusted)]

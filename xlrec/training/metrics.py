"""Ranking and beyond-accuracy metrics: the one module that defines them.

All ranking metrics derive from the 1-based rank of the single held-out target in a
full ranking of the catalogue (ties: the target ranks after every item with an equal
score). With one relevant item, Recall@K = HR@K = [rank <= K], MRR@K = 1/rank if
rank <= K, NDCG@K = 1/log2(rank + 1) if rank <= K (IDCG = 1).
"""

from __future__ import annotations

import numpy as np

KS = (5, 10, 20)


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    if ranks.size == 0:
        return out
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    return out


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = perfectly even, ->1 = concentrated)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum.sum() / cum[-1])) / n)


def popularity_groups(popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over item ids 0..N: head = top 20% by training count, tail = bottom 50%."""
    n = popularity.size - 1
    order = np.argsort(-popularity[1:], kind="stable") + 1  # most popular first
    head = np.zeros(n + 1, dtype=bool)
    tail = np.zeros(n + 1, dtype=bool)
    head[order[: int(round(0.2 * n))]] = True
    tail[order[n - int(round(0.5 * n)) :]] = True
    return head, tail


def beyond_accuracy(
    top10: np.ndarray, targets: np.ndarray, ranks: np.ndarray, popularity: np.ndarray, k: int = 10
) -> dict[str, float]:
    """Coverage@k, head/tail share of top-k slots, tail Recall@k, Gini of recommendation counts."""
    n = popularity.size - 1
    head, tail = popularity_groups(popularity)
    top = top10[:, :k]
    rec_counts = np.bincount(top.ravel(), minlength=n + 1)[1:]
    tail_users = tail[targets]
    return {
        f"coverage@{k}": float((rec_counts > 0).sum() / n),
        f"head_share@{k}": float(head[top].mean()),
        f"tail_share@{k}": float(tail[top].mean()),
        f"tail_recall@{k}": float((ranks[tail_users] <= k).mean()) if tail_users.any() else 0.0,
        f"gini@{k}": gini(rec_counts),
    }

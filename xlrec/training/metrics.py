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


def embedding_geometry(vectors: np.ndarray, k: int = 10, sample: int = 4000, seed: int = 0) -> dict[str, float]:
    """Shape of the space items are ranked in (rows: items' output vectors).

    effective_rank: exp(entropy of the singular values normalised to sum 1) (Roy & Vetterli, 2007);
    top_share: the largest squared singular value's share of all; anisotropy: mean cosine between
    two different items (exact, from the sum of unit vectors); hubness: skewness of N_k, how often
    each item is among the other items' k nearest by cosine (Radovanović et al., 2010), over at most
    `sample` items (a random subset of fixed seed above that)."""
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum() if s.sum() > 0 else s
    nz = p[p > 0]
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    total = unit.sum(axis=0)
    anisotropy = float((total @ total - (unit * unit).sum()) / (n * (n - 1))) if n > 1 else 0.0
    if n > sample:
        unit = unit[np.random.default_rng(seed).choice(n, sample, replace=False)]
    m = unit.shape[0]
    hubness = 0.0
    if m > k + 1:
        sim = unit @ unit.T
        np.fill_diagonal(sim, -np.inf)
        neighbours = np.argpartition(-sim, k, axis=1)[:, :k]
        counts = np.bincount(neighbours.ravel(), minlength=m).astype(np.float64)
        sd = counts.std()
        hubness = float(((counts - counts.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0
    return {
        "dim": float(x.shape[1]),
        "effective_rank": float(np.exp(-(nz * np.log(nz)).sum())),
        "top_share": float(s[0] ** 2 / (s**2).sum()) if s.size and (s**2).sum() > 0 else 0.0,
        "anisotropy": anisotropy,
        "hubness": hubness,
    }


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

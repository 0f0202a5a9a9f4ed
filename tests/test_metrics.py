"""Ranking metrics and the evaluator against brute-force references on random scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xlrec.data_prep.split import EvalSet
from xlrec.device import select_runtime
from xlrec.rec_models.base import SequentialRecommender
from xlrec.settings import ModelSettings
from xlrec.training.metrics import beyond_accuracy, embedding_geometry, gini, popularity_groups, ranking_metrics


def brute_rank(scores: np.ndarray, target: int, excluded: set[int]) -> int:
    """1-based rank of target; ties rank it after every equal score; excluded items removed."""
    t = scores[target]
    rank = 1
    for item, s in enumerate(scores):
        if item == target or item in excluded:
            continue
        if s >= t:
            rank += 1
    return rank


def test_ranking_metrics_formulas():
    ranks = np.array([1, 2, 5, 10, 11, 30])
    m = ranking_metrics(ranks, ks=(10,))
    assert m["recall@10"] == pytest.approx(4 / 6)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10) / 6)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 6)


class FixedScores(SequentialRecommender):
    """A 'model' whose scores for user row i are a fixed random vector (looked up by its last item)."""

    trainable = False

    def __init__(self, table: torch.Tensor):
        super().__init__(table.shape[1] - 1, ModelSettings(), max_len=0)
        self.table = table

    def next_item_scores(self, history):
        return self.table[history[:, -1]]


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_evaluator_matches_brute_force(exclude_seen):
    from xlrec.training.evaluate import evaluate
    from xlrec.training.recommender import Recommender

    rng = np.random.default_rng(0)
    num_items, users = 30, 40
    lengths = rng.integers(2, 12, size=users)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    # last items are unique per user so the score table row identifies the user
    items = rng.integers(1, num_items + 1, size=offsets[-1])
    # coarse scores create many ties, exercising the pessimistic tie rule
    table = torch.tensor(rng.integers(0, 5, size=(num_items + 1, num_items + 1)).astype(np.float32))
    target_pos = offsets[1:] - 1
    cases = EvalSet(np.arange(users), target_pos)
    rec = Recommender(FixedScores(table), select_runtime("cpu"), max_len=8, exclude_seen=exclude_seen)
    res = evaluate(rec, torch.tensor(items), torch.tensor(offsets[:-1]), cases)
    expected = []
    for u in range(users):
        hist = items[offsets[u] : target_pos[u]]
        window_last = hist[-1]
        scores = table[window_last].numpy().copy()
        target = items[target_pos[u]]
        excluded = {0} | ({int(i) for i in hist} - {int(target)} if exclude_seen else set())
        expected.append(brute_rank(scores, target, excluded))
    np.testing.assert_array_equal(res.ranks, np.array(expected))
    assert res.metrics["recall@10"] == pytest.approx(np.mean(np.array(expected) <= 10))
    # top-k never contains padding, nor (with exclude_seen) a seen non-target item
    assert (res.topk != 0).all()


def test_gini_and_groups():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 12])) == pytest.approx(0.75)
    pop = np.array([0, 100, 50, 10, 5, 4, 3, 2, 1, 1, 0])  # 10 items
    head, tail = popularity_groups(pop)
    assert head.sum() == 2 and head[1] and head[2]
    assert tail.sum() == 5 and not tail[0] and tail[10]


def test_beyond_accuracy_values():
    pop = np.array([0, 100, 50, 10, 5, 4, 3, 2, 1, 1, 0])
    top = np.array([[1, 2], [1, 10]])
    targets = np.array([10, 3])
    ranks = np.array([2, 50])
    m = beyond_accuracy(top, targets, ranks, pop, k=2)
    assert m["coverage@2"] == pytest.approx(3 / 10)
    assert m["head_share@2"] == pytest.approx(3 / 4)
    assert m["tail_share@2"] == pytest.approx(1 / 4)
    assert m["tail_recall@2"] == pytest.approx(1.0)  # only user 0 has a tail target, ranked 2


def test_embedding_geometry_of_known_shapes():
    eye = embedding_geometry(np.eye(4))  # four orthogonal items of equal length
    assert (eye["dim"], eye["effective_rank"], eye["top_share"], eye["anisotropy"]) == pytest.approx((4, 4, 0.25, 0.0))
    same = embedding_geometry(np.tile([[1.0, 2.0, 0.0]], (5, 1)))  # five copies of one direction
    assert (same["effective_rank"], same["top_share"], same["anisotropy"]) == pytest.approx((1, 1, 1))


def test_embedding_geometry_anisotropy_and_hubness_match_the_pairwise_definitions():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(60, 8)) + np.array([2.0] + [0.0] * 7)  # a shared direction: positive mean cosine
    got = embedding_geometry(v, k=5)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos = unit @ unit.T
    pairs = cos[~np.eye(60, dtype=bool)]
    assert got["anisotropy"] == pytest.approx(pairs.mean()) and got["anisotropy"] > 0.3
    np.fill_diagonal(cos, -np.inf)
    counts = np.zeros(60)
    for row in cos:
        counts[np.argsort(-row)[:5]] += 1
    skew = ((counts - counts.mean()) ** 3).mean() / counts.std() ** 3
    assert got["hubness"] == pytest.approx(skew)
    sampled = embedding_geometry(v, k=5, sample=30)  # above `sample` items, a fixed random subset
    assert sampled["hubness"] == embedding_geometry(v, k=5, sample=30)["hubness"] != got["hubness"]

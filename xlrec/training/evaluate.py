"""Full-ranking evaluation over all items, batched on the device.

Per batch the `Recommender` scores every item after each case's history (its last L items
of the flat item tensor; the padding id dropped and, with exclude_seen, every item in the
user's history except the target itself), then the target's pessimistic rank and one top-k
are taken here; metrics are computed once in `metrics`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch

from xlrec.data_prep.preprocess import Sequences
from xlrec.data_prep.split import EvalSet, Split
from xlrec.errors import DataError
from xlrec.training.metrics import KS, beyond_accuracy, ranking_metrics
from xlrec.training.recommender import Recommender

TOPK = 20


@dataclass
class EvalResult:
    metrics: dict[str, float]
    users: np.ndarray = field(repr=False)  # user index per case
    targets: np.ndarray = field(repr=False)  # target item id per case
    ranks: np.ndarray = field(repr=False)  # 1-based rank of the target
    topk: np.ndarray = field(repr=False)  # (M, 20) recommended item ids
    positions: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))  # flat target positions


# the fewest warm users whose metrics a run may report: a mean over fewer is one user's luck
# (one user's Recall@10 is 0 or 1) and would still register a model and promote a champion
MIN_EVAL_USERS = 10
# above this share of trivially-ranked users (see check_evaluable) metrics say more about the data than the model
MAX_TRIVIAL_SHARE = 0.05
SELECTION_K = 10  # the cut-off of the selection metric (xlrec.settings.SELECTION_METRIC, recall@10)


def check_evaluable(name: str, seqs: Sequences, split: Split, cold_threshold: int, exclude_seen: bool = False) -> None:
    """Refuse data the metrics cannot describe, before any training (or MLflow run) starts.

    Ranking metrics are defined up to K = 20 (and the top-20 list is kept per user): a catalogue
    of fewer items makes Recall@20 trivially 1 and the top-20 impossible. With fewer than
    MIN_EVAL_USERS warm users there is no validation and test set worth the name.
    With `exclude_seen`, a user whose history leaves fewer than SELECTION_K candidates would
    score a trivially perfect Recall@10.
    """
    largest_k = max(max(KS), TOPK)
    if seqs.num_items < largest_k:
        raise DataError(
            f"Dataset {name} has {seqs.num_items} item(s) after preprocessing, fewer than {largest_k}, the largest "
            f"cut-off of the ranking metrics (Recall/NDCG/MRR@{', '.join(map(str, KS))}); every metric at that cut-off "
            f"would be trivially perfect. Use a dataset (or filters) that leave at least {largest_k} items."
        )
    if split.cutoffs is not None:
        _check_temporal(name, seqs, split)
    if len(split.val) == 0:
        longest = int(seqs.lengths.max()) if seqs.num_users else 0
        fix = (
            f"Lower --cold-start-threshold to at most {longest} (the longest history)"
            if longest >= 3
            else "Use a dataset whose users have at least 3 interactions each"
        )
        raise DataError(
            f"No user of dataset {name} has at least {cold_threshold} interactions (cold_start_threshold), so there "
            f"is no warm user to validate or test on ({seqs.num_users} user(s), the longest history has {longest} "
            f"interaction(s)). {fix}."
        )
    if len(split.val) < MIN_EVAL_USERS:
        raise DataError(
            f"Dataset {name} has {len(split.val)} warm user(s) (with at least {cold_threshold} interactions), fewer "
            f"than the {MIN_EVAL_USERS} a run's validation and test metrics need: over so few users a metric is one "
            f"user's luck, and it would still register a champion. Use more data, or a lower "
            f"--cold-start-threshold if short histories are what you have."
        )
    if exclude_seen:
        # the test case excludes the distinct items before its target: a user who saw nearly the whole
        # catalogue is left fewer than K candidates and scores a Recall@K of 1 whatever the model does
        users = np.repeat(np.arange(seqs.num_users, dtype=np.int64), seqs.lengths)
        pairs = np.unique(users * (seqs.num_items + 1) + seqs.items)
        distinct = np.bincount(pairs // (seqs.num_items + 1), minlength=seqs.num_users)
        warm = seqs.lengths >= cold_threshold
        trivial = int(((seqs.num_items - distinct + 1 < SELECTION_K) & warm).sum())
        share = trivial / max(int(warm.sum()), 1)
        if share > MAX_TRIVIAL_SHARE:
            raise DataError(
                f"In dataset {name}, excluding a user's history from the ranking (exclude_seen) leaves {trivial} of "
                f"{int(warm.sum())} evaluated users ({share:.0%}) fewer than {SELECTION_K} candidate items, the "
                f"cut-off of the metric that selects (Recall@{SELECTION_K}): their Recall@{SELECTION_K} is 1 "
                f"whatever the model does, more than the {MAX_TRIVIAL_SHARE:.0%} a comparison can absorb. Pass "
                f"--no-exclude-seen, or use a dataset with more items than its users' histories."
            )
        if trivial:
            print(
                f"[xlrec] note: in dataset {name}, {trivial} evaluated user(s) saw all but fewer than {SELECTION_K} "
                f"items; with exclude_seen their Recall@{SELECTION_K} is 1 whatever the model does",
                file=sys.stderr,
            )


def _check_temporal(name: str, seqs: Sequences, split: Split) -> None:
    """A temporal split's windows must each hold MIN_EVAL_USERS warm users' targets."""
    when = [datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") for t in split.cutoffs or ()]
    for window, cases, begins in (("validation", split.val, when[0]), ("test", split.test, when[1])):
        users = len(np.unique(cases.users))
        if users < MIN_EVAL_USERS:
            raise DataError(
                f"The temporal split of dataset {name} leaves {users} warm user(s) with a target in its {window} "
                f"window (from {begins}; validation from {when[0]}, test from {when[1]}), fewer than the "
                f"{MIN_EVAL_USERS} a run's metrics need. Move the cutoffs (--temporal-val-quantile, "
                f"--temporal-test-quantile: lower ones leave longer windows), lower --cold-start-threshold, or "
                f"use --split leave_last_two."
            )


@torch.no_grad()
def rank_cases(
    rec: Recommender, items: torch.Tensor, starts: torch.Tensor, cases: EvalSet, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets, ranks, top-k ids) for each evaluation case, scored by `rec` over the flat
    item tensor `items` (users' sequences back to back, each starting at `starts[user]`)."""
    dev = items.device
    users_all = torch.as_tensor(cases.users, device=dev)
    tpos_all = torch.as_tensor(cases.target_pos, device=dev)
    ranks, tops, targets = [], [], []
    for i in range(0, len(cases), batch_size):
        u, tpos = users_all[i : i + batch_size], tpos_all[i : i + batch_size]
        target = items[tpos]
        scores = rec.scores(items, tpos - 1, starts[u], rec.exclude_seen, keep=target, users=u)
        target_score = scores[torch.arange(len(u), device=dev), target]
        higher = (scores > target_score[:, None]).sum(1)
        ties = (scores == target_score[:, None]).sum(1) - 1
        ranks.append((1 + higher + ties).cpu())
        tops.append(torch.topk(scores, TOPK, dim=1).indices.cpu())
        targets.append(target.cpu())
    if not ranks:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, TOPK), dtype=np.int64)
    return torch.cat(targets).numpy(), torch.cat(ranks).numpy(), torch.cat(tops).numpy()


def evaluate(
    rec: Recommender,
    items: torch.Tensor,
    starts: torch.Tensor,
    cases: EvalSet,
    popularity: np.ndarray | None = None,
    batch_size: int = 1024,
) -> EvalResult:
    """Ranking metrics of `cases`, and with `popularity` the beyond-accuracy ones of the top-k."""
    targets, ranks, top = rank_cases(rec, items, starts, cases, batch_size)
    metrics = ranking_metrics(ranks, KS)
    if popularity is not None and len(ranks):
        metrics.update(beyond_accuracy(top, targets, ranks, popularity))
    return EvalResult(
        metrics=metrics, users=cases.users, targets=targets, ranks=ranks, topk=top, positions=cases.target_pos
    )

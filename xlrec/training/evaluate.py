"""Full-ranking evaluation over all items, batched on the device.

Per batch: gather each case's last L history items from the flat item tensor, score
all items in one forward pass, drop the padding id (and, with exclude_seen, every item
in the user's history except the target itself), compute the target's pessimistic rank
and one top-k; metrics are then computed once in `metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from xlrec.data_prep.preprocess import Sequences
from xlrec.data_prep.split import EvalSet, Split
from xlrec.device import Runtime
from xlrec.errors import DataError
from xlrec.rec_models.base import SequentialRecommender
from xlrec.training.batches import gather_windows
from xlrec.training.metrics import KS, beyond_accuracy, ranking_metrics

TOPK = 20


@dataclass
class EvalResult:
    metrics: dict[str, float]
    users: np.ndarray = field(repr=False)  # user index per case
    targets: np.ndarray = field(repr=False)  # target item id per case
    ranks: np.ndarray = field(repr=False)  # 1-based rank of the target
    topk: np.ndarray = field(repr=False)  # (M, 20) recommended item ids


def check_evaluable(name: str, seqs: Sequences, split: Split, cold_threshold: int) -> None:
    """Refuse data the metrics cannot describe, before any training (or MLflow run) starts.

    Ranking metrics are defined up to K = 20 (and the top-20 list is kept per user): a catalogue
    of fewer items makes Recall@20 trivially 1 and the top-20 impossible. With no warm user
    there is no validation case, so early stopping and the test have nothing to score.
    """
    largest_k = max(max(KS), TOPK)
    if seqs.num_items < largest_k:
        raise DataError(
            f"Dataset {name} has {seqs.num_items} item(s) after preprocessing, fewer than {largest_k}, the largest "
            f"cut-off of the ranking metrics (Recall/NDCG/MRR@{', '.join(map(str, KS))}); every metric at that cut-off "
            f"would be trivially perfect. Use a dataset (or filters) that leave at least {largest_k} items."
        )
    if len(split.val) == 0:
        longest = int(seqs.lengths.max()) if seqs.num_users else 0
        fix = (f"Lower --cold-start-threshold to at most {longest} (the longest history)" if longest >= 3 else
               "Use a dataset whose users have at least 3 interactions each")
        raise DataError(
            f"No user of dataset {name} has at least {cold_threshold} interactions (cold_start_threshold), so there "
            f"is no warm user to validate or test on ({seqs.num_users} user(s), the longest history has {longest} "
            f"interaction(s)). {fix}."
        )


@torch.no_grad()
def rank_cases(model: SequentialRecommender, items: torch.Tensor, starts: torch.Tensor, cases: EvalSet,
               rt: Runtime, max_len: int, exclude_seen: bool, batch_size: int = 1024,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets, ranks, top-k ids) for each evaluation case."""
    was_training = model.training
    model.eval()
    dev = items.device
    users_all = torch.as_tensor(cases.users, device=dev)
    tpos_all = torch.as_tensor(cases.target_pos, device=dev)
    ranks, tops, targets = [], [], []
    for i in range(0, len(cases), batch_size):
        u, tpos = users_all[i:i + batch_size], tpos_all[i:i + batch_size]
        ustart = starts[u]
        history = gather_windows(items, tpos - 1, ustart, max_len)
        target = items[tpos]
        with rt.autocast():
            scores = model.next_item_scores(history)
        scores = scores.float()
        rows = torch.arange(len(u), device=dev)
        target_score = scores[rows, target]
        scores[:, 0] = float("-inf")
        if exclude_seen:
            lens = tpos - ustart
            flat_rows = torch.repeat_interleave(rows, lens)
            seen_pos = torch.repeat_interleave(ustart - torch.cumsum(lens, 0) + lens, lens) + \
                torch.arange(int(lens.sum()), device=dev)
            scores[flat_rows, items[seen_pos]] = float("-inf")
            scores[rows, target] = target_score  # the target itself always stays rankable
        higher = (scores > target_score[:, None]).sum(1)
        ties = (scores == target_score[:, None]).sum(1) - 1
        ranks.append((1 + higher + ties).cpu())
        tops.append(torch.topk(scores, TOPK, dim=1).indices.cpu())
        targets.append(target.cpu())
    if was_training:
        model.train()
    if not ranks:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, TOPK), dtype=np.int64)
    return torch.cat(targets).numpy(), torch.cat(ranks).numpy(), torch.cat(tops).numpy()


def evaluate(model: SequentialRecommender, items: torch.Tensor, starts: torch.Tensor, cases: EvalSet,
             rt: Runtime, max_len: int, exclude_seen: bool, popularity: np.ndarray | None = None,
             batch_size: int = 1024) -> EvalResult:
    targets, ranks, top = rank_cases(model, items, starts, cases, rt, max_len, exclude_seen, batch_size)
    metrics = ranking_metrics(ranks, KS)
    if popularity is not None and len(ranks):
        metrics.update(beyond_accuracy(top, targets, ranks, popularity))
    return EvalResult(metrics=metrics, users=cases.users, targets=targets, ranks=ranks, topk=top)

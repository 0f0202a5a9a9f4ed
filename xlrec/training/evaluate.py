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

from xlrec.data_prep.split import EvalSet
from xlrec.device import Runtime
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
